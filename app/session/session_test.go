package session

import (
	"slices"
	"testing"
)

func TestMemory(t *testing.T) {
	m := NewMemory()
	m.Open(1, "s1")
	m.Open(2, "s2")
	m.Open(3, "s3")
	if got := m.Online(); len(got) != 0 {
		t.Fatalf("Online before login = %v", got)
	}
	m.Login(1, 100)
	m.Login(2, 100) // the same member on two connections
	m.Login(3, 7)
	if got := m.Online(); !slices.Equal(got, []int64{7, 100}) {
		t.Errorf("Online = %v; want [7 100], one entry per member", got)
	}
	if got := m.OnlineConns(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("OnlineConns = %v", got)
	}
	if got := m.MemberConns(100); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("MemberConns(100) = %v", got)
	}
	if id, ok := m.Logout(1); !ok || id != 100 {
		t.Errorf("Logout(1) = %d, %v", id, ok)
	}
	if _, ok := m.Logout(1); ok {
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
	m.Login(3, 8) // switching member
	if got := m.Online(); !slices.Equal(got, []int64{8}) {
		t.Errorf("Online after switch = %v; want [8]", got)
	}
	// Connections sharing a session share its login.
	m.Open(4, "shared")
	m.Login(4, 50)
	m.Open(5, "shared")
	if id, ok := m.Member(5); !ok || id != 50 {
		t.Errorf("a new connection of a logged-in session: %d %v; want 50", id, ok)
	}
	m.Login(99, 1) // unknown connection: ignored
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
				m.Open(fd, "s")
				m.Login(fd, int64(fd%7))
				_ = m.OnlineConns()
				_ = m.Online()
				m.Logout(fd)
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
