package session

import (
	"slices"
	"testing"
)

func TestMemory(t *testing.T) {
	m := NewMemory()
	m.Open(1, "s1", false)
	m.Open(2, "s2", false)
	m.Open(3, "s3", false)
	if got := m.Online(); len(got) != 0 {
		t.Fatalf("Online before login = %v", got)
	}
	mustLogin(t, m, 1, 100)
	mustLogin(t, m, 2, 100) // the same member on two connections
	mustLogin(t, m, 3, 7)
	if got := m.Online(); !slices.Equal(got, []int64{7, 100}) {
		t.Errorf("Online = %v; want [7 100], one entry per member", got)
	}
	if got := m.OnlineConns(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("OnlineConns = %v", got)
	}
	if got := m.MemberConns(100); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("MemberConns(100) = %v", got)
	}
	if id, ok, _ := m.Logout(1); !ok || id != 100 {
		t.Errorf("Logout(1) = %d, %v", id, ok)
	}
	if _, ok, _ := m.Logout(1); ok {
		t.Error("second Logout reported a member")
	}
	if got := m.Online(); !slices.Equal(got, []int64{7, 100}) {
		t.Errorf("Online after one of two connections logs out = %v; want 100 still online", got)
	}
	m.Close(2)
	if got := m.Online(); !slices.Equal(got, []int64{7}) {
		t.Errorf("Online after close = %v; want [7]", got)
	}
	if _, ok := m.Member(2); ok {
		t.Error("closed connection still has a member")
	}
	mustLogin(t, m, 3, 8) // switching member
	if got := m.Online(); !slices.Equal(got, []int64{8}) {
		t.Errorf("Online after switch = %v; want [8]", got)
	}
	// Connections sharing a session share its login.
	m.Open(4, "shared", false)
	mustLogin(t, m, 4, 50)
	m.Open(5, "shared", false)
	if id, ok := m.Member(5); !ok || id != 50 {
		t.Errorf("a new connection of a logged-in session: %d %v; want 50", id, ok)
	}
	if err := m.Login(99, 1); err == nil { // unknown connection
		t.Error("Login of an unknown connection succeeded")
	}
	if _, ok := m.Member(99); ok {
		t.Error("unknown connection logged in")
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory()
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			for i := uint64(0); i < 500; i++ {
				fd := uint64(g)*1000 + i
				m.Open(fd, "s", false)
				_ = m.Login(fd, int64(fd%7)+1)
				_ = m.OnlineConns()
				_ = m.Online()
				_, _, _ = m.Logout(fd)
				m.Close(fd)
			}
			done <- true
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if n := len(m.OnlineConns()); n != 0 {
		t.Errorf("OnlineConns after everyone left = %d", n)
	}
}

func mustLogin(t *testing.T, m *Manager, fd uint64, member int64) {
	t.Helper()
	if err := m.Login(fd, member); err != nil {
		t.Fatalf("Login(%d, %d): %v", fd, member, err)
	}
}
