package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"dce/app/config"
	"dce/app/servertest"
)

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAndHealth: websocket.metrics serves Prometheus text with the
// server's counters, /healthz, and /readyz that turns 503 while stopping.
func TestMetricsAndHealth(t *testing.T) {
	s := start(t, func(c *config.Config) {
		c.Websocket.Metrics = "on"
		c.Websocket.RateLimit, c.Websocket.RateBurst = 0.001, 3 // three messages, then refusals
	})
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	base := "http://" + s.MetricsAddr()
	c := servertest.DialWS(t, s.HTTPAddrs()[0])
	c.Send(`srvtest/echo:1;{}`)
	c.ExpectPrefix(`srvtest/echo:1;`)
	c.Send(`srvtest/bad:2;{}`)
	c.ExpectPrefix(`srvtest/bad:2;`)
	c.Send(`srvtest/boom:3;{}`)
	c.ExpectPrefix(`srvtest/boom:3;`)
	c.Send(`srvtest/echo:4;{}`) // the fourth: refused by the rate limit
	c.ExpectPrefix(`srvtest/echo:4;`)
	code, body := scrape(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`dce_connections{transport="websocket"} 1`,
		`dce_connections_accepted_total 1`,
		`dce_requests_total{node="srvtest/echo",status="2xx"} 1`,
		`dce_requests_total{node="srvtest/bad",status="4xx"} 1`,
		`dce_requests_total{node="srvtest/boom",status="5xx"} 1`,
		`dce_rate_limited_total 1`,
		`dce_request_duration_seconds_count 3`,
		`dce_send_queue_depth_count 1`,
		`dce_session_store_up 1`,
		`go_goroutines`,
		`process_open_fds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := scrape(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := scrape(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	// While a stop waits for an HTTP request in flight, /readyz says so.
	held := make(chan struct{})
	go func() {
		defer close(held)
		if resp, err := http.Get("http://" + s.HTTPAddrs()[0] + "/srvtest/hold"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-holdEntered
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	waitFor(t, "readyz 503 while stopping", func() bool {
		code, _ := scrape(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	holdRelease <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-held
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the metrics listener outlived the server")
	}
}
