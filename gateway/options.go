package gateway

import (
	"errors"
	"fmt"
	"time"
)

// Timeouts bound every wait the gateway does on behalf of a client. The yaml tags are the
// "timeouts" section of the gateway configuration file.
type Timeouts struct {
	ReadHeader time.Duration `yaml:"read_header"`
	Dial       time.Duration `yaml:"dial"`
	DNS        time.Duration `yaml:"dns"`
	// Idle closes a tunnel that moved no byte in either direction for this long.
	Idle time.Duration `yaml:"idle"`
	// Lifetime, if set, closes any tunnel this long after it opened.
	Lifetime time.Duration `yaml:"lifetime"`
	// ResponseHeader bounds the wait for an upstream's response on plain HTTP forwarding.
	ResponseHeader time.Duration `yaml:"response_header"`
}

// Limits bound what one client can make the gateway hold. The yaml tags are the "limits"
// section of the gateway configuration file; the process applies the connection limits at the
// listener and the request rate through Options.RateLimit.
type Limits struct {
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections bounds open client connections overall; 0 is unlimited.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerClient bounds them per client address (IPv6 per /64); 0 is unlimited.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// RequestsPerSecond per client address, with Burst; 0 is unlimited.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// MinIdleTimeout is the floor for the tunnel idle timeout: the SCP holds long-lived connections
// to the connected service, and a shorter timeout would cut them mid-transfer.
const MinIdleTimeout = 3 * time.Minute

// DefaultTimeouts are the timeouts for every field a configuration leaves out.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		ReadHeader:     10 * time.Second,
		Dial:           10 * time.Second,
		DNS:            5 * time.Second,
		Idle:           10 * time.Minute,
		ResponseHeader: 30 * time.Second,
	}
}

// DefaultLimits are the limits for every field a configuration leaves out.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes:          32 << 10,
		MaxConnections:          10000,
		MaxConnectionsPerClient: 512,
		RequestsPerSecond:       50,
		Burst:                   100,
	}
}

// withDefaults fills each zero field (Lifetime stays 0: no limit).
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	fill := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&t.ReadHeader, d.ReadHeader)
	fill(&t.Dial, d.Dial)
	fill(&t.DNS, d.DNS)
	fill(&t.Idle, d.Idle)
	fill(&t.ResponseHeader, d.ResponseHeader)
	return t
}

// withDefaults fills MaxHeaderBytes, the only limit the handler reads; the others are the
// process's, where 0 means unlimited.
func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultLimits().MaxHeaderBytes
	}
	return l
}

// Validate reports every problem with t.
func (t Timeouts) Validate() error {
	var errs []error
	if t.Idle < MinIdleTimeout {
		errs = append(errs, fmt.Errorf("timeouts.idle: %s is below the minimum %s (the SCP holds long-lived connections)", t.Idle, MinIdleTimeout))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"read_header", t.ReadHeader}, {"dial", t.Dial}, {"dns", t.DNS}, {"response_header", t.ResponseHeader}} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("timeouts.%s: must be positive", f.name))
		}
	}
	if t.Lifetime < 0 {
		errs = append(errs, errors.New("timeouts.lifetime: must not be negative"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with l.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxConnections < 0 || l.MaxConnectionsPerClient < 0 || l.RequestsPerSecond < 0 || l.Burst < 0 {
		errs = append(errs, errors.New("limits: values must not be negative"))
	}
	if l.RequestsPerSecond > 0 && l.Burst < 1 {
		errs = append(errs, errors.New("limits.burst: must be at least 1 when requests_per_second is set"))
	}
	if l.MaxHeaderBytes < 1024 {
		errs = append(errs, fmt.Errorf("limits.max_header_bytes: %d is too small (minimum 1024)", l.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}
