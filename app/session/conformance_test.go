package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"dce/app/dce"
	"dce/app/redistest"
	"dce/app/wait"
)

// testRedis is the machine's Redis (SPEC §9: the Redis store is tested
// against the real one). CI sets DCE_TEST_REDIS=require, and a Redis that
// does not answer fails there; elsewhere it skips with a message.
const testRedis = "redis://127.0.0.1:6379/0"

// stores opens one store of each kind for t, each cleaned up at its end.
// ttl-sensitive tests share the same stores.
func stores(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return NewMemoryStore() },
		"file": func(t *testing.T) Store {
			s, err := OpenFileStore(filepath.Join(t.TempDir(), "sessions.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func(t *testing.T) Store { return redisForTest(t) },
	}
}

// redisForTest opens a RedisStore on the machine's Redis with a prefix of
// its own, and deletes every key under it at the end.
func redisForTest(t *testing.T) *RedisStore {
	t.Helper()
	prefix := fmt.Sprintf("dcetest:%d:", rand.Uint64())
	s, err := OpenRedisStore(testRedis, prefix, nil)
	if err != nil {
		if os.Getenv("DCE_TEST_REDIS") == "require" {
			t.Fatalf("the machine's Redis is required (DCE_TEST_REDIS=require): %v", err)
		}
		t.Skipf("no Redis at %s (start one, or CI's .ci/run does): %v", testRedis, err)
	}
	t.Cleanup(func() {
		s.deleteAll(context.Background())
		s.Close()
	})
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func member(t *testing.T, m *Manager, fd uint64) int64 {
	t.Helper()
	id, _ := m.Member(fd)
	return id
}

// TestConformance runs every rule of SPEC §9 against each store: the
// manager must behave the same on all of them.
func TestConformance(t *testing.T) {
	rules := []struct {
		name string
		run  func(t *testing.T, m *Manager)
	}{
		{"several tabs share a login", func(t *testing.T, m *Manager) {
			sid := NewID()
			m.Open(1, sid, true)
			m.Open(2, sid, true)
			must(t, m.Login(1, 7))
			if member(t, m, 2) != 7 {
				t.Error("the second tab is not logged in")
			}
			m.Close(1)
			m.Close(2)
			m.Open(3, sid, true) // a refresh: a new connection presenting the cookie
			if member(t, m, 3) != 7 {
				t.Error("a refresh is not logged in")
			}
		}},
		{"several browsers, one member", func(t *testing.T, m *Manager) {
			a, b := NewID(), NewID()
			m.Open(1, a, true)
			m.Open(2, a, true)
			m.Open(3, b, true)
			must(t, m.Login(1, 7))
			must(t, m.Login(3, 7))
			if got := m.MemberConns(7); !slices.Equal(got, []uint64{1, 2, 3}) {
				t.Errorf("MemberConns = %v; want every connection of both sessions", got)
			}
			if n := m.Places(7); n != 3 {
				t.Errorf("Places = %d; want 3", n)
			}
			if got := m.Online(); !slices.Equal(got, []int64{7}) {
				t.Errorf("Online = %v", got)
			}
		}},
		{"logout ends one session only", func(t *testing.T, m *Manager) {
			a, b := NewID(), NewID()
			m.Open(1, a, true)
			m.Open(2, b, true)
			must(t, m.Login(1, 7))
			must(t, m.Login(2, 7))
			if got, ok, err := m.Logout(1); err != nil || !ok || got != 7 {
				t.Fatalf("Logout = %d %v %v", got, ok, err)
			}
			if member(t, m, 1) != 0 || member(t, m, 2) != 7 {
				t.Errorf("after logout of a: a %d, b %d; want 0, 7", member(t, m, 1), member(t, m, 2))
			}
			m.Close(1)
			m.Open(3, a, true)
			if member(t, m, 3) != 0 {
				t.Error("a refresh of the logged-out session is logged in")
			}
		}},
		{"setSession reaches every live session and prunes the rest", func(t *testing.T, m *Manager) {
			a, b, c := NewID(), NewID(), NewID()
			m.Open(1, a, true)
			m.Open(2, b, true)
			m.Open(3, c, true)
			must(t, m.Login(1, 7))
			must(t, m.Login(2, 7))
			must(t, m.Login(3, 7))
			if _, _, err := m.Logout(3); err != nil {
				t.Fatal(err)
			}
			must(t, m.Destroy(b)) // ended elsewhere
			must(t, m.SetSession(7, "theme", "dark"))
			var v string
			if ok, err := m.Get(a, "theme", &v); err != nil || !ok || v != "dark" {
				t.Errorf("live session: %q %v %v", v, ok, err)
			}
			for _, sid := range []string{b, c} {
				if ok, _ := m.Get(sid, "theme", &v); ok {
					t.Errorf("session %s… got the value after it left the member", sid[:6])
				}
			}
			ids, err := m.Store().MemberSessions(context.Background(), 7)
			if err != nil || !slices.Equal(ids, []string{a}) {
				t.Errorf("member index after SetSession = %v %v; want only the live session", ids, err)
			}
		}},
		{"data: set, get, delete, destroy", func(t *testing.T, m *Manager) {
			sid := NewID()
			must(t, m.Set(sid, "cart", map[string]int{"apples": 3}))
			var cart map[string]int
			if ok, err := m.Get(sid, "cart", &cart); err != nil || !ok || cart["apples"] != 3 {
				t.Errorf("Get = %v %v %v", cart, ok, err)
			}
			must(t, m.Delete(sid, "cart"))
			if ok, _ := m.Get(sid, "cart", &cart); ok {
				t.Error("deleted key still there")
			}
			m.Open(1, sid, true)
			must(t, m.Login(1, 9))
			must(t, m.Destroy(sid))
			if member(t, m, 1) != 0 {
				t.Error("a destroyed session's connection is still logged in")
			}
			if _, ok, _ := m.Store().Load(context.Background(), sid, time.Minute); ok {
				t.Error("a destroyed session is still stored")
			}
		}},
		{"renew: new id, same data and login, old id gone", func(t *testing.T, m *Manager) {
			old := NewID()
			m.Open(1, old, true)
			must(t, m.Login(1, 5))
			must(t, m.Set(old, "k", 1))
			id, err := m.Renew(old)
			if err != nil || !ValidID(id) || id == old {
				t.Fatalf("Renew = %q %v", id, err)
			}
			if m.SessionOf(1) != id || member(t, m, 1) != 5 {
				t.Errorf("the connection: session %s…, member %d; want the new id, still 5", m.SessionOf(1)[:6], member(t, m, 1))
			}
			var v int
			if ok, _ := m.Get(id, "k", &v); !ok || v != 1 {
				t.Error("the data did not move")
			}
			m.Open(2, old, true)
			if member(t, m, 2) != 0 {
				t.Error("the old id still logs in")
			}
			m.Open(3, id, true)
			if member(t, m, 3) != 5 {
				t.Error("the new id does not log in")
			}
		}},
		{"a connection's own session is forgotten when it closes", func(t *testing.T, m *Manager) {
			sid := NewID()
			m.Open(1, sid, false) // no cookie: the chat's sessions
			must(t, m.Login(1, 3))
			must(t, m.Set(sid, "k", 1))
			must(t, m.SetSession(3, "theme", "dark")) // reaches it: it is live
			var theme string
			if ok, _ := m.Get(sid, "theme", &theme); !ok || theme != "dark" {
				t.Errorf("SetSession missed a live per-connection session: %q", theme)
			}
			m.Close(1)
			if _, ok, _ := m.Store().Load(context.Background(), sid, time.Minute); ok {
				t.Error("a per-connection session outlived its connection")
			}
			if ids, _ := m.Store().MemberSessions(context.Background(), 3); len(ids) != 0 {
				t.Errorf("member index keeps %v", ids)
			}
		}},
		{"ttl: an unused session expires, use renews it", func(t *testing.T, m *Manager) {
			// Wall time: the Redis store's ttl runs in Redis. Uses 250 ms
			// apart against a ttl of 1 s leave a busy machine 750 ms of slack.
			m.ttl = time.Second
			used, idle := NewID(), NewID()
			must(t, m.Set(used, "k", 1))
			must(t, m.Set(idle, "k", 1))
			var v int
			for range 5 { // 1.25 s in all, used every 250 ms
				time.Sleep(250 * time.Millisecond)
				if ok, err := m.Get(used, "k", &v); err != nil || !ok {
					t.Fatalf("a session in use expired: %v %v", ok, err)
				}
			}
			if ok, _ := m.Get(idle, "k", &v); ok {
				t.Error("an idle session outlived its ttl")
			}
		}},
	}
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, r := range rules {
				t.Run(r.name, func(t *testing.T) {
					r.run(t, New(open(t), time.Minute, nil))
				})
			}
		})
	}
}

// TestMalformedIDs: anything but 40 lowercase hex characters is no id.
func TestMalformedIDs(t *testing.T) {
	good := NewID()
	if !ValidID(good) || len(good) != 40 {
		t.Fatalf("NewID() = %q", good)
	}
	for _, bad := range []string{"", "abc", good[:39], good + "0", "G" + good[1:], "../../" + good[6:], good[:39] + "\n", "ABCDEF" + good[6:]} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

// TestFileStoreSurvivesReopen: a logged-in session is still logged in
// after the file is closed and opened again (a restart).
func TestFileStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	fs, err := OpenFileStore(path)
	must(t, err)
	m := New(fs, time.Hour, nil)
	sid := NewID()
	m.Open(1, sid, true)
	must(t, m.Login(1, 11))
	must(t, m.Set(sid, "lang", "zh"))
	must(t, fs.Close())

	fs, err = OpenFileStore(path)
	must(t, err)
	defer fs.Close()
	m = New(fs, time.Hour, nil)
	m.Open(1, sid, true)
	var lang string
	if member(t, m, 1) != 11 {
		t.Error("the session is not logged in after the reopen")
	}
	if ok, _ := m.Get(sid, "lang", &lang); !ok || lang != "zh" {
		t.Errorf("data after the reopen: %q %v", lang, ok)
	}
}

// TestFileStoreSweeps: expired records leave the file.
func TestFileStoreSweeps(t *testing.T) {
	fs, err := OpenFileStore(filepath.Join(t.TempDir(), "sessions.db"))
	must(t, err)
	defer fs.Close()
	ctx := context.Background()
	must(t, fs.Save(ctx, "a", Record{Member: 1}, time.Millisecond))
	must(t, fs.AddMember(ctx, 1, "a", time.Millisecond))
	must(t, fs.Save(ctx, "b", Record{Member: 2}, time.Hour))
	time.Sleep(5 * time.Millisecond)
	must(t, fs.Sweep())
	n := 0
	must(t, fs.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSessions).Stats().KeyN + tx.Bucket(bucketMembers).Stats().KeyN
		return nil
	}))
	if n != 1 {
		t.Errorf("%d keys after the sweep; want 1 (b)", n)
	}
}

// TestRedisOutage: a private Redis is stopped under a working store: calls
// fail at once with a 503, one warning is logged however many calls fail,
// and when Redis is back the store answers again by itself.
func TestRedisOutage(t *testing.T) {
	redis := redistest.Start(t)

	log := &lines{}
	s, err := OpenRedisStore(redis.URL(), "t:", slogTo(log))
	must(t, err)
	defer s.Close()
	m := New(s, time.Minute, nil)
	sid := NewID()
	m.Open(1, sid, true)
	must(t, m.Login(1, 4))

	redis.Stop()
	var de *dce.Error
	for i := 0; i < 50; i++ {
		err := m.Set(sid, "k", i)
		if !errors.As(err, &de) || de.Code != 503 {
			t.Fatalf("call %d during the outage: %v; want a 503", i, err)
		}
	}
	if member(t, m, 1) != 4 {
		t.Error("the connection lost its login in the outage")
	}
	if n := log.count("session store unavailable"); n != 1 {
		t.Errorf("%d warnings for one outage; want 1", n)
	}

	redis.Restart() // empty: a restarted Redis without persistence
	if !wait.Until(10*time.Second, s.Available) {
		t.Fatal("the store did not reconnect")
	}
	must(t, m.Set(sid, "k", 1))
	if log.count("session store available again") != 1 {
		t.Error("no line when the store came back")
	}
}

// TestRedisDownAtStart names the URL, without its password.
func TestRedisDownAtStart(t *testing.T) {
	port := freePort(t)
	_, err := OpenRedisStore(fmt.Sprintf("redis://:secret@127.0.0.1:%d/0", port), "t:", nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("OpenRedisStore(down) = %v; want an error naming the URL, not its password", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lines collects log lines.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, string(p))
	return len(p), nil
}

func (l *lines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
