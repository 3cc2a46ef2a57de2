// Package redisconn opens the Redis clients of the session store and the
// cluster the same way: rueidis, no client-side cache, one-second dial
// timeout, and errors that name the URL without its password.
package redisconn

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/rueidis"
)

// Redact is rawURL without its password, for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Dial connects to rawURL (the configuration key is named in a parse
// error) and checks that Redis answers. With retry false a failed command
// is reported at once instead of retried: the caller reconnects itself.
func Dial(rawURL, key string, retry bool) (rueidis.Client, error) {
	shown := Redact(rawURL)
	opt, err := rueidis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, shown, err)
	}
	opt.Dialer.Timeout = time.Second
	opt.ConnWriteTimeout = time.Second
	opt.DisableCache = true // no client-side caching: every node reads Redis
	opt.DisableRetry = !retry
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("Redis at %s does not answer: %w", shown, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("Redis at %s does not answer: %w", shown, err)
	}
	return c, nil
}

// DeleteAll deletes every key under prefix: the tests' cleanup of the
// machine's shared Redis.
func DeleteAll(ctx context.Context, c rueidis.Client, prefix string) {
	keys, err := c.Do(ctx, c.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
	if err == nil && len(keys) > 0 {
		c.Do(ctx, c.B().Del().Key(keys...).Build())
	}
}
