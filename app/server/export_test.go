package server

// WriterState reports, for tests, whether connection fd has a writer
// running and whether that writer waits for the coalescing gap.
func (h *Hub) WriterState(fd uint64) (writing, deferred bool) {
	h.mu.RLock()
	c := h.conns[fd]
	h.mu.RUnlock()
	if c == nil {
		return false, false
	}
	return c.out.State()
}
