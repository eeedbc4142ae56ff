// Package control is the local control channel of a running `scpclient run`: `status`,
// `restart-component` and `trigger` talk to it. It is an AF_UNIX socket in the data folder
// (Linux, macOS and Windows 10 and later all have them, so no POSIX signal is needed) guarded
// by a random token in a file beside it that only the service account can read. It is not a
// network connection: offline mode keeps working in a namespace without any interface.
package control

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
)

// File names in the data folder.
const (
	SocketName = "scpclient-control.sock"
	TokenName  = "scpclient-control.token"
)

// maxSocketPath is the portable limit of an AF_UNIX path (sun_path is 104 bytes on macOS).
const maxSocketPath = 103

// ErrNotRunning is returned (wrapped) by Call when no `scpclient run` serves the data folder.
var ErrNotRunning = errors.New("no running scpclient serves this data folder")

// Request is one command.
type Request struct {
	Token     string `json:"token"`
	Command   string `json:"command"` // status | restart | trigger
	Component string `json:"component,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status is what a running process reports.
type Status struct {
	PID         int         `json:"pid"`
	Started     time.Time   `json:"started"`
	ModeInForce string      `json:"modeInForce"`
	Components  []Component `json:"components"`
}

// Component is one component's state.
type Component struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // running | stopped
	Started   time.Time `json:"started"`
	Restarts  int       `json:"restarts"`
	Cycles    int       `json:"cycles"`
	LastError string    `json:"lastError,omitempty"`
}

// Handler carries out commands.
type Handler interface {
	Status() Status
	Restart(component string) error
	Trigger(component string) error
}

// Server serves the control socket.
type Server struct {
	ln    net.Listener
	token string
	h     Handler
	log   *slog.Logger
	wg    sync.WaitGroup
	dir   string
}

// Listen creates the token and the socket in dataDir.
func Listen(dataDir string, h Handler, log *slog.Logger) (*Server, error) {
	sock := filepath.Join(dataDir, SocketName)
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("control socket path %s is longer than %d bytes; use a shorter data_dir", sock, maxSocketPath)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b)
	if err := atomicfile.WriteFile(filepath.Join(dataDir, TokenName), []byte(token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("control token: %w", err)
	}
	// The caller holds the site lock, so a socket file left here belongs to a dead process.
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	_ = os.Chmod(sock, 0o600)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ln: ln, token: token, h: h, log: log, dir: dataDir}, nil
}

// Serve answers requests until ctx ends, then removes the socket and the token.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.wg.Wait()
			_ = os.Remove(filepath.Join(s.dir, TokenName))
			_ = os.Remove(filepath.Join(s.dir, SocketName))
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return
	}
	var req Request
	res := Response{}
	switch {
	case json.Unmarshal(line, &req) != nil:
		res.Error = "malformed request"
	case subtle.ConstantTimeCompare([]byte(req.Token), []byte(s.token)) != 1:
		res.Error = "bad token"
	default:
		res = s.do(req)
	}
	out, _ := json.Marshal(res)
	_, _ = c.Write(append(out, '\n'))
}

func (s *Server) do(req Request) Response {
	var err error
	switch req.Command {
	case "status":
		st := s.h.Status()
		return Response{OK: true, Status: &st}
	case "restart":
		err = s.h.Restart(req.Component)
	case "trigger":
		err = s.h.Trigger(req.Component)
	default:
		err = fmt.Errorf("unknown command %q", req.Command)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{OK: true}
}

// Call sends one command to the process serving dataDir.
func Call(ctx context.Context, dataDir string, req Request) (Response, error) {
	tok, err := os.ReadFile(filepath.Join(dataDir, TokenName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Response{}, fmt.Errorf("%w (%s)", ErrNotRunning, dataDir)
		}
		return Response{}, fmt.Errorf("control token: %w", err)
	}
	req.Token = strings.TrimSpace(string(tok))
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(dataDir, SocketName))
	if err != nil {
		return Response{}, fmt.Errorf("%w (%s): %v", ErrNotRunning, dataDir, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return Response{}, fmt.Errorf("control: %w", err)
	}
	var res Response
	if err := json.Unmarshal(line, &res); err != nil {
		return Response{}, fmt.Errorf("control: malformed answer: %w", err)
	}
	if !res.OK {
		return res, errors.New(res.Error)
	}
	return res, nil
}
