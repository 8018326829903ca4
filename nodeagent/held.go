package nodeagent

import (
	"context"
	"errors"
	"net"
)

// steadyProbe is what the agent remembers of a service's health checks
// for UnhealthyAfterTimeouts.
type steadyProbe struct {
	last     probe // the last successful check
	timeouts int   // checks timed out in a row since
}

// holdThroughTimeoutLocked applies Config.UnhealthyAfterTimeouts to the
// check p of service id (a.mu held): a check that timed out, on a service
// whose previous check succeeded and fewer times in a row than the limit,
// is replaced by that previous check (healthy, its assets and figures;
// the generation rate is not measured across it). Every other check is
// reported as it is and remembered.
func (a *Agent) holdThroughTimeoutLocked(id string, p *probe) {
	s := a.steady[id]
	if p.err == nil {
		if s == nil {
			s = &steadyProbe{}
			a.steady[id] = s
		}
		s.last, s.timeouts = *p, 0
		return
	}
	if s == nil || !isTimeout(p.err) {
		delete(a.steady, id)
		return
	}
	s.timeouts++
	if s.timeouts >= a.cfg.UnhealthyAfterTimeouts {
		delete(a.steady, id) // unhealthy until a check succeeds again
		return
	}
	a.log.Warn("service health check timed out; reported as its last check found until it times out again",
		"service", id, "err", p.err, "timeouts", s.timeouts, "unhealthy_after", a.cfg.UnhealthyAfterTimeouts)
	*p = s.last
	p.tokens = -1
}

// isTimeout reports whether err is a timeout (the check's deadline, a
// dial, DNS lookup or read that timed out), as opposed to an answer or a
// refusal.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
