package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// No container engine is needed to work on Granary, so these tests check
// the container files by reading them: what `docker compose config` and a
// build would reject or silently get wrong.

type composeFile struct {
	Member   any                       `yaml:"x-member"` // the anchor the members merge
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string                       `yaml:"image"`
	Hostname    string                       `yaml:"hostname"`
	Build       map[string]string            `yaml:"build"`
	Command     []string                     `yaml:"command"`
	Restart     string                       `yaml:"restart"`
	Volumes     []string                     `yaml:"volumes"`
	Ports       []string                     `yaml:"ports"`
	Environment map[string]string            `yaml:"environment"`
	DependsOn   map[string]map[string]string `yaml:"depends_on"`
	Healthcheck struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Start    string   `yaml:"start_period"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
}

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestComposeFileStructure(t *testing.T) {
	var f composeFile
	// KnownFields: a misspelt key (depend_on, healtcheck) is an error, as it
	// is for compose, instead of a silently missing section.
	dec := yaml.NewDecoder(strings.NewReader(string(readRepoFile(t, "docker-compose.yml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}

	redis, ok := f.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	if !slices.Contains(redis.Command, "--appendonly") || redis.Command[slices.Index(redis.Command, "--appendonly")+1] != "yes" {
		t.Errorf("redis command %q: want --appendonly yes", redis.Command)
	}
	if !slices.Equal(redis.Healthcheck.Test, []string{"CMD", "redis-cli", "ping"}) {
		t.Errorf("redis healthcheck %q", redis.Healthcheck.Test)
	}
	if !slices.Contains(redis.Volumes, "redis-data:/data") {
		t.Errorf("redis volumes %q: want redis-data:/data", redis.Volumes)
	}
	if _, ok := f.Volumes["redis-data"]; !ok {
		t.Error("named volume redis-data is not declared")
	}
	if redis.Restart != "unless-stopped" {
		t.Errorf("redis restart %q", redis.Restart)
	}

	var peers []string
	for _, name := range []string{"member1", "member2", "member3"} {
		m, ok := f.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		if m.Build["dockerfile"] != "Dockerfile" || m.Build["context"] != "." {
			t.Errorf("%s build %v: want the repository's Dockerfile", name, m.Build)
		}
		if m.Restart != "unless-stopped" {
			t.Errorf("%s restart %q", name, m.Restart)
		}
		if m.DependsOn["redis"]["condition"] != "service_healthy" {
			t.Errorf("%s depends_on %v: want redis service_healthy", name, m.DependsOn)
		}
		if !slices.Equal(m.Healthcheck.Test, []string{"CMD", "/granary", "healthcheck"}) || m.Healthcheck.Interval == "" || m.Healthcheck.Retries < 1 {
			t.Errorf("%s healthcheck %+v", name, m.Healthcheck)
		}
		env := m.Environment
		if env["GRANARY_CLUSTER_HOST"] != name || env["GRANARY_REDIS_URL"] != "redis://redis:6379/0" || env["GRANARY_HTTP_ADDR"] != "0.0.0.0:8080" {
			t.Errorf("%s environment %v", name, env)
		}
		if !strings.Contains(env["GRANARY_ADMIN_PASSWORD"], "${GRANARY_ADMIN_PASSWORD") || !strings.Contains(env["GRANARY_JWT_SECRET"], "${GRANARY_JWT_SECRET:?") {
			t.Errorf("%s: the admin password and JWT secret must come from the caller's environment: %v", name, env)
		}
		// Every variable handed to a member must be one it reads, or it
		// would be warned about at start.
		for k := range env {
			if !slices.Contains(knownEnvNames(), k) {
				t.Errorf("%s sets %s, which no member reads", name, k)
			}
		}
		if len(m.Ports) != 1 || !strings.HasPrefix(m.Ports[0], "127.0.0.1:") {
			t.Errorf("%s ports %q: publish on loopback only", name, m.Ports)
		}
		peers = append(peers, name+":"+env["GRANARY_AUTOMANAGED_PORT"])
	}
	if got := f.Services["member1"].Environment["GRANARY_CLUSTER_PEERS"]; got != strings.Join(peers, ",") {
		t.Errorf("GRANARY_CLUSTER_PEERS %q, want %q", got, strings.Join(peers, ","))
	}
}

func TestComposeDockerfile(t *testing.T) {
	df := string(readRepoFile(t, "Dockerfile"))
	for _, re := range []string{
		`(?m)^FROM golang:1\.26 AS build$`,
		`(?m)^RUN CGO_ENABLED=0 go build -trimpath .*-o /out/granary \./cmd/granary$`,
		`(?m)^FROM \S+:nonroot$`,
		`(?m)^COPY --from=build /out/granary /granary$`,
		`(?m)^USER nonroot`,
		`(?m)^HEALTHCHECK .*CMD \["/granary", "healthcheck"\]$`,
		`(?m)^ENTRYPOINT \["/granary", "node"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile does not match %s", re)
		}
	}
	ignore := string(readRepoFile(t, ".dockerignore"))
	for _, must := range []string{".git", "bin"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(must) + `$`).MatchString(ignore) {
			t.Errorf(".dockerignore lacks %s", must)
		}
	}
}

// TestComposeConfigIsValid loads docker-compose.yml with compose-go, the
// loader `docker compose config` runs (schema validation, interpolation,
// merges, depends_on checks), so the file is checked as Compose reads it
// without a container engine; and without GRANARY_JWT_SECRET it must refuse,
// naming the variable.
func TestComposeConfigIsValid(t *testing.T) {
	load := func(env map[string]string) (*types.Project, error) {
		opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"},
			cli.WithWorkingDirectory("../.."), cli.WithName("granary"), cli.WithEnv(envList(env)), cli.WithInterpolation(true))
		if err != nil {
			return nil, err
		}
		return opts.LoadProject(t.Context())
	}
	p, err := load(map[string]string{"GRANARY_JWT_SECRET": strings.Repeat("s", 32)})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load as Compose reads it: %v", err)
	}
	var members int
	for name, svc := range p.Services {
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
		if svc.Restart == "" {
			t.Errorf("service %s has no restart policy", name)
		}
		if _, ok := svc.DependsOn["redis"]; ok {
			members++
			if c := svc.DependsOn["redis"].Condition; c != types.ServiceConditionHealthy {
				t.Errorf("service %s waits for redis on %q, want service_healthy", name, c)
			}
		}
	}
	if members < 2 {
		t.Errorf("%d services wait for a healthy redis, want every member (at least 2)", members)
	}
	if _, err := load(nil); err == nil || !strings.Contains(err.Error(), "GRANARY_JWT_SECRET") {
		t.Errorf("without GRANARY_JWT_SECRET: %v, want a refusal naming it", err)
	}
}

func envList(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
