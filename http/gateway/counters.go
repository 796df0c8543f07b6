package gateway

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"granary/messages"
)

type counterJSON struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

type counterGroupJSON struct {
	Group    string           `json:"group"`
	Counters map[string]int64 `json:"counters"`
	// Children stopped by the supervisor, and restarts per child: not in
	// the contract's minimum, there so an operator sees supervision work.
	Stopped  []string         `json:"stopped"`
	Restarts map[string]int32 `json:"restarts"`
}

// nameParam validates a counter or group name: names are grain identities.
func nameParam(c echo.Context, param string) (string, error) {
	v := c.Param(param)
	if !messages.CounterNamePattern.MatchString(v) {
		return "", messages.Fail(messages.CodeValidationFailed, "%s: must match %s", param, messages.CounterNamePattern)
	}
	return v, nil
}

func (g *Gateway) getCounter(c echo.Context) error {
	return g.counterCall(c, http.StatusOK, func(*messages.CounterRequest) error { return nil },
		func(r *messages.CounterRequest) {
			r.Command = &messages.CounterRequest_Get{Get: &messages.GetCounter{}}
		})
}

type incrementBody struct {
	By *int64 `json:"by"`
}

// incrementBy reads an increment's optional {"by"}.
func (g *Gateway) incrementBy(c echo.Context) (int64, error) {
	var b incrementBody
	if err := g.bindJSON(c, &b); err != nil {
		return 0, err
	}
	by := int64(1)
	if b.By != nil {
		by = *b.By
	}
	if by < 1 || by > messages.MaxCounterIncrement {
		return 0, messages.Fail(messages.CodeValidationFailed, "by: must be between 1 and %d", messages.MaxCounterIncrement)
	}
	return by, nil
}

func (g *Gateway) incrementCounter(c echo.Context) error {
	by, err := g.incrementBy(c)
	if err != nil {
		return err
	}
	return g.counterCall(c, http.StatusOK, nil, func(r *messages.CounterRequest) {
		r.Command = &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: by}}
	})
}

func (g *Gateway) resetCounter(c echo.Context) error {
	var b struct{}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	return g.counterCall(c, http.StatusOK, nil, func(r *messages.CounterRequest) {
		r.Command = &messages.CounterRequest_Reset_{Reset_: &messages.ResetCounter{}}
	})
}

func (g *Gateway) counterCall(c echo.Context, status int, _ func(*messages.CounterRequest) error, set func(*messages.CounterRequest)) error {
	name, err := nameParam(c, "name")
	if err != nil {
		return err
	}
	cmdID, err := commandID(c, principal(c).Subject)
	if err != nil {
		return err
	}
	r := &messages.CounterRequest{CommandId: cmdID}
	set(r)
	reply, err := call(g, c, func(ctx context.Context) (*messages.CounterReply, error) {
		return g.counters.Send(ctx, name, r)
	})
	if err != nil {
		return err
	}
	return c.JSON(status, counterJSON{Name: name, Value: reply.GetValue()})
}

func (g *Gateway) spawnCounter(c echo.Context) error {
	var b struct{}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	group, reply, err := g.groupCall(c, func(ctx context.Context, group, cmdID string) (*messages.CounterGroupReply, error) {
		return g.groups.Spawn(ctx, group, cmdID)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]string{"group": group, "counter": reply.GetSpawned()})
}

type broadcastBody struct {
	Command *string `json:"command"`
}

func (g *Gateway) broadcastCounters(c echo.Context) error {
	var b broadcastBody
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	if b.Command == nil || (*b.Command != "increment" && *b.Command != "reset") {
		return messages.Fail(messages.CodeValidationFailed, `command: must be "increment" or "reset"`)
	}
	group, reply, err := g.groupCall(c, g.groupSend(&messages.CounterGroupRequest{
		Command: &messages.CounterGroupRequest_Broadcast{Broadcast: &messages.BroadcastCounters{Command: *b.Command}}}))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderGroup(group, reply))
}

func (g *Gateway) getCounterGroup(c echo.Context) error {
	group, reply, err := g.groupCall(c, g.groupSend(&messages.CounterGroupRequest{
		Command: &messages.CounterGroupRequest_Get{Get: &messages.GetCounterGroup{}}}))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, renderGroup(group, reply))
}

// groupFunc is one call to a counter group under a command id.
type groupFunc func(ctx context.Context, group, cmdID string) (*messages.CounterGroupReply, error)

// groupSend sends req as it is, under the command id.
func (g *Gateway) groupSend(req *messages.CounterGroupRequest) groupFunc {
	return func(ctx context.Context, group, cmdID string) (*messages.CounterGroupReply, error) {
		req.CommandId = cmdID
		return g.groups.Send(ctx, group, req)
	}
}

func (g *Gateway) groupCall(c echo.Context, send groupFunc) (string, *messages.CounterGroupReply, error) {
	group, err := nameParam(c, "group")
	if err != nil {
		return "", nil, err
	}
	cmdID, err := commandID(c, principal(c).Subject)
	if err != nil {
		return "", nil, err
	}
	reply, err := call(g, c, func(ctx context.Context) (*messages.CounterGroupReply, error) {
		return send(ctx, group, cmdID)
	})
	return group, reply, err
}

func renderGroup(group string, r *messages.CounterGroupReply) counterGroupJSON {
	out := counterGroupJSON{Group: group, Counters: r.GetCounters(), Stopped: r.GetStopped(), Restarts: r.GetRestarts()}
	if out.Counters == nil {
		out.Counters = map[string]int64{}
	}
	if out.Stopped == nil {
		out.Stopped = []string{}
	}
	if out.Restarts == nil {
		out.Restarts = map[string]int32{}
	}
	return out
}

// childCounterJSON is the contract's answer about one child of a group.
type childCounterJSON struct {
	Group   string `json:"group"`
	Counter string `json:"counter"`
	Value   int64  `json:"value"`
}

func (g *Gateway) getChildCounter(c echo.Context) error {
	return g.childCall(c, &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
}

func (g *Gateway) incrementChildCounter(c echo.Context) error {
	by, err := g.incrementBy(c)
	if err != nil {
		return err
	}
	return g.childCall(c, &messages.CounterRequest{Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: by}}})
}

func (g *Gateway) resetChildCounter(c echo.Context) error {
	var b struct{}
	if err := g.bindJSON(c, &b); err != nil {
		return err
	}
	return g.childCall(c, &messages.CounterRequest{Command: &messages.CounterRequest_Reset_{Reset_: &messages.ResetCounter{}}})
}

// childCall sends one request to one child through its group's
// supervisor, which owns the child (the seed's "reset one counter").
func (g *Gateway) childCall(c echo.Context, req *messages.CounterRequest) error {
	name, err := nameParam(c, "counter")
	if err != nil {
		return err
	}
	group, reply, err := g.groupCall(c, func(ctx context.Context, group, cmdID string) (*messages.CounterGroupReply, error) {
		return g.groups.Child(ctx, group, name, cmdID, req)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, childCounterJSON{Group: group, Counter: name, Value: reply.GetCounters()[name]})
}
