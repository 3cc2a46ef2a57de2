package session

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkManager measures the manager's hot operations on each store:
//
//	open+close     a connection without a cookie comes and goes (the chat's)
//	open-presented a connection presents a logged-in session (a refresh)
//	login+logout   of a connection's own session (memory only)
//	login+logout-presented  of a session presented by its cookie (the store)
//	online         the online list of a room of 10,000
//	member-conns   the connections of one member (pushMember's lookup)
//
// go test -run X -bench Manager -benchtime 20000x ./app/session
func BenchmarkManager(b *testing.B) {
	for _, name := range []string{"memory", "file", "redis"} {
		b.Run(name, func(b *testing.B) {
			var store Store
			switch name {
			case "memory":
				store = NewMemoryStore()
			case "file":
				fs, err := OpenFileStore(filepath.Join(b.TempDir(), "s.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer fs.Close()
				store = fs
			case "redis":
				rs, err := OpenRedisStore(testRedis, fmt.Sprintf("dcebench:%d:", time.Now().UnixNano()), nil)
				if err != nil {
					b.Skip(err)
				}
				defer func() {
					rs.deleteAll(context.Background())
					rs.Close()
				}()
				store = rs
			}
			m := New(store, time.Hour, nil)
			const room = 10000
			for fd := uint64(1); fd <= room; fd++ { // a room to measure in
				m.Open(fd, NewID(), false)
				_ = m.Login(fd, int64(fd)) // a connection's own session: memory only, whatever the store

			}
			fd := uint64(room)
			b.Run("open+close", func(b *testing.B) {
				for b.Loop() {
					fd++
					m.Open(fd, NewID(), false)
					m.Close(fd)
				}
			})
			b.Run("login+logout", func(b *testing.B) {
				for b.Loop() {
					fd++
					m.Open(fd, NewID(), false)
					_ = m.Login(fd, int64(fd))
					_, _, _ = m.Logout(fd)
					m.Close(fd)
				}
			})
			b.Run("login+logout-presented", func(b *testing.B) {
				for b.Loop() {
					fd++
					m.Open(fd, NewID(), true)
					_ = m.Login(fd, int64(fd))
					_, _, _ = m.Logout(fd)
					m.Close(fd)
				}
			})
			sid := NewID()
			fd++
			m.Open(fd, sid, true)
			_ = m.Login(fd, 1)
			b.Run("open-presented", func(b *testing.B) {
				for b.Loop() {
					fd++
					m.Open(fd, sid, true)
					m.Close(fd)
				}
			})
			b.Run("online", func(b *testing.B) {
				for b.Loop() {
					_ = m.Online()
					_ = m.OnlineConns()
				}
			})
			b.Run("member-conns", func(b *testing.B) {
				for b.Loop() {
					_ = m.MemberConns(1)
				}
			})
		})
	}
}
