package session

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// IDLen is the length of a session id: 40 lowercase hex characters.
const IDLen = 40

// HeaderName carries a session id on an HTTP request, before the cookie.
const HeaderName = "X-Session-Id"

// NewID returns a random session id.
func NewID() string {
	var b [IDLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether s has the form of a session id. Anything else a
// client sends is ignored (a new id is made), never stored or logged.
func ValidID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// FromHTTP finds the session id of an HTTP request: the X-Session-Id
// header, then the cookie called name. ok is false when neither holds a
// valid id.
func FromHTTP(r *http.Request, name string) (id string, ok bool) {
	if id := r.Header.Get(HeaderName); ValidID(id) {
		return id, true
	}
	return fromCookie(r, name)
}

// FromHandshake finds the session id of a WebSocket handshake: the cookie
// called name, then the query parameter of that name.
func FromHandshake(r *http.Request, name string) (id string, ok bool) {
	if id, ok := fromCookie(r, name); ok {
		return id, true
	}
	if id := r.URL.Query().Get(name); ValidID(id) {
		return id, true
	}
	return "", false
}

func fromCookie(r *http.Request, name string) (string, bool) {
	for _, c := range r.CookiesNamed(name) {
		if ValidID(c.Value) {
			return c.Value, true
		}
	}
	return "", false
}

// Cookie is the session cookie SPEC §9 describes: a browser session cookie,
// HttpOnly, SameSite=Lax, for path.
func Cookie(name, id, path string) *http.Cookie {
	return &http.Cookie{Name: name, Value: id, Path: path, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}
