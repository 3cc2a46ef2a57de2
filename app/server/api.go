package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"dce/app/config"
	"dce/app/dce"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// startAPI opens the server-to-server API: HTTP with the password as a
// bearer token, compared in constant time.
//
//	POST /push   {"fds":[1,2]|"all":true|"member":3, "path":"x", "data":...}
//	GET  /conns  the live connections
//	GET  /status the counters of `websocket status`
func (s *Server) startAPI(cfg config.Websocket) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.APIHost, strconv.Itoa(cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	want := sha256.Sum256([]byte(cfg.APIPassword))
	r := chi.NewRouter()
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := sha256.Sum256([]byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				writeJSON(w, http.StatusUnauthorized, dce.FailStatus(401, "wrong or missing password (Authorization: Bearer PASSWORD)"))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	r.Post("/push", s.apiPush)
	r.Get("/conns", func(w http.ResponseWriter, r *http.Request) {
		var list []map[string]any
		for _, c := range s.hub.Conns() {
			list = append(list, map[string]any{"fd": c.FD(), "transport": c.Transport(), "remote": c.RemoteAddr()})
		}
		writeJSON(w, 200, dce.Status{Data: map[string]any{"conns": list}})
	})
	r.Get("/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Status()) })
	s.api = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	s.apiAddr = shown(cfg.APIHost, ln.Addr())
	s.goTracked(func() { _ = s.api.Serve(ln) })
	return nil
}

func (s *Server) apiPush(w http.ResponseWriter, r *http.Request) {
	var in struct {
		FDs    []uint64        `json:"fds"`
		All    bool            `json:"all"`
		Member *int64          `json:"member"`
		Path   string          `json:"path"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
		writeJSON(w, 400, dce.FailStatus(400, "want JSON {fds|all|member, path, data}: "+err.Error()))
		return
	}
	data := in.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	var text string
	if json.Unmarshal(data, &text) == nil {
		data = json.RawMessage(text) // a JSON string travels as is
	}
	m := &dce.Message{Path: in.Path, Body: data}
	var n int
	switch {
	case in.All:
		n = s.hub.SendAll(m)
	case in.Member != nil:
		n = s.hub.Send(s.hub.sessions.MemberConns(*in.Member), m)
	default:
		n = s.hub.Send(in.FDs, m)
	}
	writeJSON(w, 200, dce.Status{Data: map[string]any{"queued": n}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
