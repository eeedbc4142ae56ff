//go:build !unix

package fdguard

// waitQueued returns at once where the socket cannot be polled: the accept on the reserve
// waits for the client instead.
func (l *listener) waitQueued() error { return nil }
