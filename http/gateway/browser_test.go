package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromium finds a headless-capable Chromium (Debian's package: chromium).
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("GRANARY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("needs Chromium (Debian: apt-get install chromium); .ci/run installs it")
	return ""
}

// runChromium loads url headless and returns the DOM after scripts ran for
// budget of virtual time, and Chromium's log (console messages included).
func runChromium(t *testing.T, bin, url string, budget time.Duration, extra ...string) (dom, log string) {
	t.Helper()
	args := append([]string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0", "--window-size=1280,900",
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errb.String())
	}
	return out.String(), errb.String()
}

// Done-means 5 of issue 6: headless Chromium loads the dashboard, its
// scripts run without console errors, and it shows the members and a
// deposit made during the test; a screenshot is kept as an artifact.
func TestDashboardInChromium(t *testing.T) {
	bin := chromium(t)
	h := newHarness(t)
	admin := token(t, "root", "admin")
	acc := h.open(admin, "BROWSER-1", 100)
	h.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", admin, `{"amount":4242}`).account(t, http.StatusOK)

	// The token travels in the fragment, which the browser never sends.
	url := h.srv.URL + "/#token=" + admin
	dom, log := runChromium(t, bin, url, 4*time.Second, "--dump-dom")
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, ":CONSOLE") {
			t.Errorf("console message from the dashboard: %s", line)
		}
	}
	for _, want := range []string{h.cluster.Member(0).ID(), "MoneyDeposited", "amount 4242", "account-" + acc.ID, "least_connections", "account_summary"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dashboard does not show %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	dir := os.Getenv("GRANARY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot, _ := filepath.Abs(filepath.Join(dir, "dashboard.png"))
	runChromium(t, bin, url, 4*time.Second, "--screenshot="+shot)
	if info, err := os.Stat(shot); err != nil || info.Size() < 10_000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
