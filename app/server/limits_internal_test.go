package server

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"dce/app/config"
)

func TestConnectionLimit(t *testing.T) {
	tests := []struct {
		configured int
		files      uint64
		want       int
		warns      bool
	}{
		{0, 20000, 20000 - 100 - 1000, false}, // follows the file limit, 5 % and 100 kept
		{0, 1024, 1024 - 100 - 51, false},
		{500, 20000, 500, false},
		{100000, 20000, 100000, true}, // configured above what files allow: kept, and said
		{0, 0, 100000, false},         // no file limit known
	}
	for _, tt := range tests {
		got, warn := connectionLimit(tt.configured, tt.files)
		if got != tt.want || (warn != "") != tt.warns {
			t.Errorf("connectionLimit(%d, %d) = %d, %q; want %d, warning %v", tt.configured, tt.files, got, warn, tt.want, tt.warns)
		}
		if tt.warns && (!strings.Contains(warn, "100000") || !strings.Contains(warn, "20000")) {
			t.Errorf("warning %q does not name both numbers", warn)
		}
	}
}

func TestAddressLimits(t *testing.T) {
	lim := &config.Websocket{MaxConnsPerIP: 2, ConnectRate: 1, PerIPExempt: []string{"127.0.0.0/8"}}
	var a addresses
	now := time.Now()
	one, two := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if r := a.take(one, lim, now); r != admitted {
		t.Fatalf("first connection: %v", r)
	}
	if r := a.take(one, lim, now); r != admitted {
		t.Fatalf("second connection (within the burst of 2): %v", r)
	}
	if r := a.take(one, lim, now); r != addressFull {
		t.Errorf("third connection of one address: %v; want addressFull", r)
	}
	if r := a.take(two, lim, now); r != admitted {
		t.Errorf("another address: %v; want admitted", r)
	}
	a.give(one)
	if r := a.take(one, lim, now); r != addressRate {
		t.Errorf("a new connection at once after the burst: %v; want addressRate", r)
	}
	if r := a.take(one, lim, now.Add(1100*time.Millisecond)); r != admitted {
		t.Errorf("after a second: %v; want admitted", r)
	}
	for i := 0; i < 100; i++ {
		if r := a.take(netip.MustParseAddr("127.0.0.9"), lim, now); r != admitted {
			t.Fatalf("exempt loopback refused at %d: %v", i, r)
		}
	}
	a.give(one)
	a.give(one)
	a.give(two)
	a.sweep(now.Add(time.Hour))
	if len(a.m) != 0 {
		t.Errorf("%d addresses remembered after all closed; want none", len(a.m))
	}
}
