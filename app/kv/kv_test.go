package kv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"dce/app/redistest"
	"dce/app/wait"
)

// stores runs f against every store: memory, a file in a temporary
// folder, and the machine's Redis under a prefix of this test's own.
func stores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { f(t, NewMemory()) })
	t.Run("file", func(t *testing.T) {
		s, err := OpenFile(filepath.Join(t.TempDir(), "kv.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f(t, s)
	})
	t.Run("redis", func(t *testing.T) {
		url := redistest.Machine(t)
		s, err := OpenRedis(url, fmt.Sprintf("dcetest:kv:%d:", time.Now().UnixNano()), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.DeleteAll(context.Background()); s.Close() }()
		f(t, s)
	})
}

func TestCounters(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var wg sync.WaitGroup
		seen := make([]int64, 40)
		for i := range seen {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := s.Next(ctx, "ids")
				if err != nil {
					t.Error(err)
				}
				seen[i] = n
			}()
		}
		wg.Wait()
		got := map[int64]bool{}
		for _, n := range seen {
			if n < 1 || n > 40 || got[n] {
				t.Fatalf("counter values %v: want 1…40, each once", seen)
			}
			got[n] = true
		}
		if n, _ := s.Next(ctx, "other"); n != 1 {
			t.Fatalf("a second counter starts at %d, want 1", n)
		}
	})
}

func TestTables(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		if _, ok, err := s.Get(ctx, "nick", "Drunk"); ok || err != nil {
			t.Fatalf("empty table: ok %v err %v", ok, err)
		}
		v, created, err := s.PutNew(ctx, "nick", "Drunk", []byte(`{"id":3}`))
		if err != nil || !created || string(v) != `{"id":3}` {
			t.Fatalf("first PutNew: %s %v %v", v, created, err)
		}
		v, created, err = s.PutNew(ctx, "nick", "Drunk", []byte(`{"id":4}`))
		if err != nil || created || string(v) != `{"id":3}` {
			t.Fatalf("second PutNew returned %s created %v (%v): want the first value kept", v, created, err)
		}
		if err := s.Put(ctx, "nick", "Drunk", []byte(`{"id":3,"brief":"new"}`)); err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := s.Get(ctx, "nick", "Drunk"); !ok || string(v) != `{"id":3,"brief":"new"}` {
			t.Fatalf("after Put: %s %v", v, ok)
		}
		if _, ok, _ := s.Get(ctx, "other", "Drunk"); ok {
			t.Fatal("tables share keys")
		}
	})
}

func TestLogs(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		for id := int64(1); id <= 12; id++ {
			if err := s.Append(ctx, "h", id, []byte("m"+strconv.FormatInt(id, 10)), 10); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.Append(ctx, "g", 1, []byte("other log"), 10)
		check := func(what string, got [][]byte, want ...string) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("%s: %q, want %q", what, got, want)
			}
			for i := range want {
				if string(got[i]) != want[i] {
					t.Fatalf("%s: %q, want %q", what, got, want)
				}
			}
		}
		all, err := s.After(ctx, "h", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		check("the capped log", all, "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12")
		newer, _ := s.After(ctx, "h", 10, 0)
		check("after 10", newer, "m11", "m12")
		last, _ := s.After(ctx, "h", 0, 3)
		check("the newest 3", last, "m10", "m11", "m12")
		none, _ := s.After(ctx, "h", 12, 0)
		check("after the newest", none)
		older, more, _ := s.Before(ctx, "h", 8, 3)
		check("3 before 8", older, "m5", "m6", "m7")
		if !more {
			t.Fatal("Before says nothing older remains, but m3 and m4 do")
		}
		oldest, more, _ := s.Before(ctx, "h", 5, 3)
		check("3 before 5", oldest, "m3", "m4")
		if more {
			t.Fatal("Before says older ones remain past the oldest")
		}
		other, _ := s.After(ctx, "g", 0, 0)
		check("another log", other, "other log")
	})
}

func TestFileSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = s.Next(ctx, "ids")
	_ = s.Put(ctx, "nick", "a", []byte("1"))
	_ = s.Append(ctx, "h", 1, []byte("hi"), 5)
	s.Close()
	if s, err = OpenFile(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Next(ctx, "ids"); n != 2 {
		t.Fatalf("counter after reopen: %d, want 2", n)
	}
	if v, ok, _ := s.Get(ctx, "nick", "a"); !ok || string(v) != "1" {
		t.Fatal("table lost at reopen")
	}
	if h, _ := s.After(ctx, "h", 0, 0); len(h) != 1 || string(h[0]) != "hi" {
		t.Fatalf("log after reopen: %q", h)
	}
}

// A Redis that stops answering makes calls fail at once with a 503, and
// the store works again once Redis is back.
func TestRedisOutage(t *testing.T) {
	r := redistest.Start(t)
	s, err := OpenRedis(r.URL(), "kv:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Next(ctx, "ids"); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	_, err = s.Next(ctx, "ids")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with Redis stopped: %v, want ErrUnavailable", err)
	}
	began := time.Now()
	if err := s.Append(ctx, "h", 1, []byte("x"), 5); !errors.Is(err, ErrUnavailable) || time.Since(began) > 500*time.Millisecond {
		t.Fatalf("a call during the outage: %v after %v, want ErrUnavailable at once", err, time.Since(began))
	}
	r.Restart()
	wait.Until(10*time.Second, s.Available)
	if n, err := s.Next(ctx, "ids"); err != nil || n != 1 {
		t.Fatalf("after Redis came back (empty): %d %v", n, err)
	}
}
