// Package wait is the tests' one way to wait for something another
// process or goroutine does: poll an observable condition (a reply, a
// counter, a key in Redis, a listener) until it holds, instead of sleeping
// for a guessed time.
package wait

import "time"

// Until calls cond until it returns true or within has passed, and
// returns its last answer. It polls at 5 ms, then ever more slowly (at
// most every 200 ms), so a condition that retries a request does not
// flood the server while it waits.
func Until(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}
