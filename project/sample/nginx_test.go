package sample_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/app/wait"
)

// nginxBinary finds Debian's nginx; without it the test skips, except in
// CI (which installs it).
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is required in CI (.ci/run installs it)")
	}
	t.Skip("nginx is not installed (apt-get install nginx); CI runs this test")
	return ""
}

// TestBehindNginx runs the chat behind a real nginx with the README's
// config (docs/deploy/nginx.conf): the page, a WebSocket chat between two
// clients, and both reloads — ours and nginx's — under open WebSockets.
func TestBehindNginx(t *testing.T) {
	bin := nginxBinary(t)
	s := startChat(t, nil)
	upstream := s.HTTPAddrs()[0]
	port := servertest.FreePort(t)

	site, err := os.ReadFile(filepath.Join(root, "docs", "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("server 127.0.0.1:20461;", "server "+upstream+";", "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)).Replace(string(site))
	dir := t.TempDir()
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/site.conf;
}
`, dir)
	if os.Geteuid() == 0 {
		main = "user root;\n" + main
	}
	for name, body := range map[string]string{"nginx.conf": main, "site.conf": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	proxy := fmt.Sprintf("127.0.0.1:%d", port)
	if !wait.Until(5*time.Second, func() bool {
		c, err := net.Dial("tcp", proxy)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx did not listen: %s", log)
	}

	resp, err := http.Get("http://" + proxy + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "sample/im/login") {
		t.Fatalf("page through nginx: %d %.200s", resp.StatusCode, page)
	}

	ada := servertest.DialWS(t, proxy)
	bo := servertest.DialWS(t, proxy)
	ada.Send(`sample/im/login:1;{"nickname":"Ada"}`)
	skipTo(t, ada, `sample/im/login:1;{"data"`)
	bo.Send(`sample/im/login:1;{"nickname":"Bo"}`)
	skipTo(t, bo, `sample/im/login:1;{"data"`)
	chat := func(round string) {
		t.Helper()
		ada.Send(`sample/im/send;{"message":"` + round + `"}`)
		skipTo(t, bo, `setMessageList;[{"id"`)
	}
	chat("through the proxy")

	if _, err := s.Reload(); err != nil { // ./dce websocket reload
		t.Fatal(err)
	}
	chat("after our reload")

	if out, err := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-s", "reload").CombinedOutput(); err != nil {
		t.Fatalf("nginx -s reload: %v %s", err, out)
	}
	chat("after nginx's reload")        // the old worker keeps open WebSockets until they close
	late := servertest.DialWS(t, proxy) // and the new one takes new ones
	late.Send(`sample/im/login:1;{"nickname":"Cy"}`)
	skipTo(t, late, `sample/im/login:1;{"data"`)
}
