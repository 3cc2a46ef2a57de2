package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"dce/app/codec"
	"dce/app/dce"
	"dce/app/render"
	"dce/app/router"
	"dce/app/session"
)

// maxBody bounds an HTTP request body.
const maxBody = 1 << 20

// httpHandler serves one WebSocket/HTTP port: WebSocket upgrades on any
// path; then, when enable_http is on, www/ files, HTTP nodes, a 404 page.
func (s *Server) httpHandler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverHTTP)
	r.HandleFunc("/*", func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			s.serveWebSocket(w, r)
			return
		}
		if !s.cfg.Load().Websocket.EnableHTTP {
			http.Error(w, "HTTP is off on this server (websocket.enable_http); connect with WebSocket", http.StatusNotFound)
			return
		}
		if s.serveStatic(w, r) {
			return
		}
		s.serveNode(w, r)
	})
	return r
}

func (s *Server) recoverHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("http handler panicked", "path", r.URL.Path, "panic", p)
				http.Error(w, router.InternalMessage, http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// serveStatic serves a regular file under www/ for GET and HEAD. The path is
// cleaned and opened through os.Root, so nothing outside www/ is reachable.
func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		return false
	}
	root, err := os.OpenRoot(filepath.Join(s.root, "www"))
	if err != nil {
		return false
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	securityHeaders(w.Header())
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
	return true
}

func securityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// serveNode runs the HTTP node matching the path.
func (s *Server) serveNode(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.errorPage(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if s.access() {
		s.log.Info("request", "transport", "http", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	req := &router.Request{
		Path: strings.Trim(r.URL.Path, "/"), Method: strings.ToLower(r.Method),
		Data: requestData(r, body), Raw: string(body), Args: r.URL.Query(),
		Hub: s.hub, HTTP: r, Logger: s.log, Session: s.httpSession(w, r),
	}
	if err := s.router.Load().Serve(&httpWriter{s: s, w: w, r: r}, req); err != nil {
		s.log.Error("request failed", "transport", "http", "path", r.URL.Path, "err", err.Error())
	}
}

// httpSession is the session of an HTTP request: the X-Session-Id header,
// then the cookie; with session.auto_open a page request (GET) under
// session.cookie_path without one gets a new id and its cookie.
func (s *Server) httpSession(w http.ResponseWriter, r *http.Request) string {
	cfg := s.cfg.Load().Session
	if sid, ok := session.FromHTTP(r, cfg.Name); ok {
		return sid
	}
	if !cfg.AutoOpen || r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, cfg.CookiePath) {
		return "" // a cookie the browser would not send back here is not worth setting
	}
	sid := session.NewID()
	http.SetCookie(w, session.Cookie(cfg.Name, sid, cfg.CookiePath))
	return sid
}

// httpWriter answers one HTTP request: a status code, a page or JSON.
type httpWriter struct {
	s *Server
	w http.ResponseWriter
	r *http.Request
}

func (h *httpWriter) Reply(_ string, data any) error {
	b, err := codec.Body(data)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}

// SetCookie adds a cookie to the response (dce.Context.SetCookie).
func (h *httpWriter) SetCookie(ck *http.Cookie) { http.SetCookie(h.w, ck) }

func (h *httpWriter) NoNode(_ string, exists bool) {
	if exists {
		h.s.errorPage(h.w, http.StatusMethodNotAllowed, h.r.Method+" is not allowed for "+h.r.URL.Path)
	} else {
		h.s.errorPage(h.w, http.StatusNotFound, "No page at "+h.r.URL.Path)
	}
}

func (h *httpWriter) Finish(rt *router.Router, c *dce.Context) {
	n, w := c.Node, h.w
	st := c.Result()
	code := http.StatusOK
	if st.Status != nil && !*st.Status && st.Code >= 400 && st.Code <= 599 {
		code = st.Code
		if n.IsTemplate() {
			h.s.errorPage(w, code, st.Message)
			return
		}
	}
	nonce := nonce()
	var buf bytes.Buffer
	if err := rt.Renderer.Render(&buf, c, false, nonce); err != nil {
		h.s.log.Error("render failed", "path", h.r.URL.Path, "render", n.Render, "err", err.Error())
		h.s.errorPage(w, http.StatusInternalServerError, router.InternalMessage)
		return
	}
	hd := w.Header()
	securityHeaders(hd)
	hd.Set("Content-Type", render.ContentType(n))
	if strings.HasPrefix(render.ContentType(n), "text/html") {
		hd.Set("Content-Security-Policy", csp(nonce))
	}
	w.WriteHeader(code)
	if h.r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// csp allows only the page's own scripts and styles: files from this server
// and inline blocks carrying the response's nonce.
func csp(nonce string) string {
	return "default-src 'self'; script-src 'self' 'nonce-" + nonce + "'; style-src 'self' 'nonce-" + nonce +
		"'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// requestData is the JSON body (object or array), else the form values.
func requestData(r *http.Request, body []byte) any {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		return codec.Data(string(body))
	}
	data := map[string]any{}
	if ct == "application/x-www-form-urlencoded" {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseForm(); err == nil {
			for k, vs := range r.PostForm {
				data[k] = vs[len(vs)-1]
			}
		}
	}
	return data
}

func (s *Server) errorPage(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	title := http.StatusText(code)
	_, _ = io.WriteString(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>`+
		strconv.Itoa(code)+` `+title+`</title><style>body{font:16px system-ui,sans-serif;margin:15vh auto;max-width:32rem;color:#333;padding:0 1rem}h1{font-weight:600}</style>`+
		`<h1>`+strconv.Itoa(code)+` `+html.EscapeString(title)+`</h1><p>`+html.EscapeString(msg)+`</p><p><a href="/">Home</a></p></html>`)
}
