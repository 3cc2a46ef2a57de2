package session

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"dce/app/config"
)

// FileName is the file store's file under runtime/ (per server instance:
// sessions-PORT.db for a server started with -port).
func FileName(instance string) string {
	if instance == "" {
		return "sessions.db"
	}
	return "sessions-" + instance + ".db"
}

// FromConfig opens the store session.store names and returns a manager on
// it: memory; file (runtime/sessions.db under root); redis (redis.url, which
// must answer now). The caller closes the manager's store.
func FromConfig(cfg *config.Config, log *slog.Logger) (*Manager, error) {
	var store Store
	kind, redisURL := cfg.Session.Store, cfg.Redis.URL
	if cfg.Cluster.Redis != "" && kind != "redis" { // a cluster's sessions are every node's: always in its Redis
		kind, redisURL = "redis", cfg.Cluster.Redis
	}
	switch kind {
	case "", "memory":
		store = NewMemoryStore()
	case "file":
		dir := filepath.Join(cfg.Root, "runtime")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("session store: %w", err)
		}
		fs, err := OpenFileStore(filepath.Join(dir, FileName(cfg.Instance)))
		if err != nil {
			return nil, err
		}
		store = fs
	case "redis":
		rs, err := OpenRedisStore(redisURL, cfg.Redis.Prefix, log)
		if err != nil {
			return nil, err
		}
		store = rs
	default:
		return nil, fmt.Errorf("session.store %q: want memory, file or redis", cfg.Session.Store)
	}
	return New(store, cfg.Session.TTL, log), nil
}
