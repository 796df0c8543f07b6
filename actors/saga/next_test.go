package saga

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"granary/messages"
)

// The scenario files in testdata drive Next, the etcd-raft datadriven way:
// each block is a command, "----", and what it must print. Commands:
//
//	saga <transfer|order> [execute_at=<offset>]   start a saga at t0
//	next at=<offset> [outcome=ok|refused:<detail>|unknown]
//	                                     decide; a record is applied to the state
//	state                                the status, steps and compensations left
//	cancel at=<offset>                   the saga is cancelled (as the grain records it)
//
// Offsets are from t0 ("1s", "30s"); the saga deadline is 30 s. An outcome
// answers the last invoke. GRANARY_REWRITE=1 rewrites the expected output.
const scenarioDeadline = 30 * time.Second

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type scenario struct {
	def     *Definition
	s       *messages.SagaState
	invoked *Action
	applyFn func(*messages.SagaState, string, *messages.SagaEvent) *messages.SagaState
}

func (sc *scenario) run(t *testing.T, cmd string) string {
	fields := strings.Fields(cmd)
	args := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		args[k] = v
	}
	offset := func(name string) time.Time {
		d, err := time.ParseDuration(args[name])
		if err != nil {
			t.Fatalf("%q: %s=%q: %v", cmd, name, args[name], err)
		}
		return t0.Add(d)
	}
	switch fields[0] {
	case "saga":
		sc.def = map[string]*Definition{"transfer": Transfer, "order": Order}[fields[1]]
		if sc.def == nil {
			t.Fatalf("%q: no such saga", cmd)
		}
		sc.applyFn = codecFor(sc.def).Apply
		started := &messages.SagaStarted{Kind: sc.def.Kind, DeadlineUnixMs: t0.Add(scenarioDeadline).UnixMilli(),
			Transfer: &messages.TransferInput{TransferId: "t1", FromAccount: "acc_a", ToAccount: "acc_b", Amount: 100}}
		if _, ok := args["execute_at"]; ok {
			started.ExecuteAtUnixMs = offset("execute_at").UnixMilli()
		}
		sc.s = sc.applyFn(nil, "t1", &messages.SagaEvent{OccurredAtUnixMs: t0.UnixMilli(), Event: &messages.SagaEvent_Started{Started: started}})
		sc.invoked = nil
		return sc.describe()
	case "state":
		return sc.describe()
	case "cancel":
		sc.s = sc.applyFn(sc.s, "t1", &messages.SagaEvent{OccurredAtUnixMs: offset("at").UnixMilli(),
			Event: &messages.SagaEvent_Finished{Finished: &messages.SagaFinished{Status: StatusCancelled}}})
		return sc.describe()
	case "next":
		now := offset("at")
		var last *Outcome
		if o, ok := args["outcome"]; ok {
			if sc.invoked == nil {
				t.Fatalf("%q: an outcome, but nothing was invoked", cmd)
			}
			last = &Outcome{Step: sc.invoked.Step, Undo: sc.invoked.Undo}
			switch {
			case o == "ok":
			case o == "unknown":
				last.Err = errors.New("no answer within the step timeout")
			case strings.HasPrefix(o, "refused:"):
				last.Err = stepError(strings.ReplaceAll(strings.TrimPrefix(o, "refused:"), "_", " "))
			default:
				t.Fatalf("%q: outcome %q", cmd, o)
			}
		}
		a := Next(sc.def, sc.s, now, scenarioDeadline, last)
		sc.invoked = nil
		switch a.Kind {
		case Record:
			a.Event.OccurredAtUnixMs = now.UnixMilli()
			sc.s = sc.applyFn(sc.s, "t1", a.Event)
		case Invoke:
			sc.invoked = &a
		}
		return describeAction(sc.def, a)
	}
	t.Fatalf("unknown command %q", cmd)
	return ""
}

func rel(ms int64) string { return time.UnixMilli(ms).Sub(t0).String() }

func describeAction(def *Definition, a Action) string {
	switch a.Kind {
	case Record:
		return "record " + describeEvent(a.Event)
	case Invoke:
		phase, limit := "do", "drive"
		if a.Undo {
			phase = "undo"
		}
		if !a.Limit.IsZero() {
			limit = rel(a.Limit.UnixMilli())
		}
		return fmt.Sprintf("invoke %s %s cmd=%s limit=%s", def.Steps[a.Step].Name, phase, a.CommandID, limit)
	case Wait:
		return "wait until=" + rel(a.Until.UnixMilli())
	case Pause:
		alarm := ""
		if a.Alarm {
			alarm = " (alarm)"
		}
		return "pause" + alarm + ": " + a.Reason
	}
	return a.Kind.String()
}

func describeEvent(ev *messages.SagaEvent) string {
	switch e := ev.GetEvent().(type) {
	case *messages.SagaEvent_StepStarted:
		return "step_started " + e.StepStarted.GetStep()
	case *messages.SagaEvent_StepCompleted:
		return "step_completed " + e.StepCompleted.GetStep()
	case *messages.SagaEvent_StepFailed:
		return fmt.Sprintf("step_failed %s error=%q unknown=%v", e.StepFailed.GetStep(), e.StepFailed.GetError(), e.StepFailed.GetOutcomeUnknown())
	case *messages.SagaEvent_StepCompensated:
		return "step_compensated " + e.StepCompensated.GetStep()
	case *messages.SagaEvent_Finished:
		return "finished " + e.Finished.GetStatus()
	case *messages.SagaEvent_Released:
		return "released deadline=" + rel(e.Released.GetDeadlineUnixMs())
	}
	return fmt.Sprintf("%T", ev.GetEvent())
}

func (sc *scenario) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "status=%s deadline=%s", sc.s.GetStatus(), rel(sc.s.GetDeadlineUnixMs()))
	for _, st := range sc.s.GetSteps() {
		fmt.Fprintf(&b, " %s=%s", st.GetName(), st.GetStatus())
	}
	if len(sc.s.GetUndoUnknown()) > 0 {
		fmt.Fprintf(&b, " undo_unknown=%s", strings.Join(sc.s.GetUndoUnknown(), ","))
	}
	return b.String()
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	rewrite := os.Getenv("GRANARY_REWRITE") != ""
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			sc := &scenario{}
			for _, block := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
				lines := strings.Split(block, "\n")
				var comments []string
				for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
					comments = append(comments, lines[0])
					lines = lines[1:]
				}
				if len(lines) < 2 || lines[1] != "----" {
					t.Fatalf("%s: a block is a command, ----, and its output: %q", file, block)
				}
				got := sc.run(t, lines[0])
				want := strings.Join(lines[2:], "\n")
				if !rewrite && got != want {
					t.Errorf("%s: %s\n got: %s\nwant: %s", file, lines[0], got, want)
				}
				for _, c := range comments {
					out.WriteString(c + "\n")
				}
				out.WriteString(lines[0] + "\n----\n" + got + "\n\n")
			}
			if rewrite {
				if err := os.WriteFile(file, []byte(strings.TrimSpace(out.String())+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
