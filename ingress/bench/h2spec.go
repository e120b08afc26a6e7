package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// runH2spec runs h2spec over TLS against Portico's TLS listener and
// nginx's http2 ssl one, both proxying "/" to the backend, and prints how
// many cases each passed and the names of those it failed. sections, when
// given, are the only ones run (h2spec's spec arguments, "http2/8.1.2.2");
// verbose prints h2spec's own output too.
func runH2spec(bin string, sections []string, verbose bool) error {
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("h2spec: %w (make h2spec builds it)", err)
	}
	if err := ensureTools("nginx"); err != nil {
		return err
	}
	r, err := newRig(64)
	if err != nil {
		return err
	}
	defer r.close()
	_, nginxAddrs, err := r.startFront("proxy", 64, http2)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	done, err := servePortico(ctx, nil, secure, backends{http: r.backend}, r.cert)
	if err != nil {
		return err
	}
	defer func() { cancel(); <-done }()

	var reports []h2specReport
	for _, t := range []struct{ name, addr string }{{"Portico", secure.Addr().String()}, {"nginx", nginxAddrs[http2]}} {
		rep, out, err := h2spec(bin, t.addr, r.dir, sections)
		if verbose {
			fmt.Printf("== h2spec against %s\n%s\n", t.name, out)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		rep.name = t.name
		reports = append(reports, rep)
	}
	fmt.Printf("h2spec -t -k: Portico %d/%d, nginx %d/%d\n", reports[0].passed, reports[0].total, reports[1].passed, reports[1].total)
	for _, rep := range reports {
		fmt.Printf("\n%s failed %d:\n", rep.name, len(rep.failed))
		for _, f := range rep.failed {
			fmt.Printf("  %s\n      %s\n", f.name, f.why)
		}
	}
	return nil
}

type h2specReport struct {
	name          string
	passed, total int
	failed        []h2specCase
}

// h2specCase is a failed case: its section and title, and what h2spec
// expected and saw.
type h2specCase struct{ name, why string }

// explain reads h2spec's account of a failure, the expected outcomes a line
// each and then what happened, as one line.
func explain(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	if len(lines) < 2 {
		return lines[0]
	}
	return "expected " + strings.Join(lines[:len(lines)-1], " or ") + "; got " + lines[len(lines)-1]
}

// h2spec runs the suite against addr and reads its JUnit report; h2spec
// exits non-zero when a case fails, which is a result here, not an error.
func h2spec(bin, addr, dir string, sections []string) (h2specReport, []byte, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return h2specReport{}, nil, err
	}
	file := filepath.Join(dir, "h2spec.xml")
	_ = os.Remove(file)
	args := append([]string{"-t", "-k", "-h", host, "-p", port, "-j", file}, sections...)
	out, runErr := command(bin, args...).CombinedOutput()
	b, err := os.ReadFile(file)
	if err != nil {
		return h2specReport{}, out, fmt.Errorf("h2spec wrote no report (%v): %w: %s", runErr, err, out)
	}
	rep, err := parseH2specReport(b)
	if err != nil {
		return rep, out, err
	}
	// The summary line and the report must agree, or one of them is
	// misread.
	m := h2specSummary.FindSubmatch(out)
	if m == nil {
		return rep, out, fmt.Errorf("no summary line in h2spec's output (%v): %s", runErr, out)
	}
	total, _ := strconv.Atoi(string(m[1]))
	passed, _ := strconv.Atoi(string(m[2]))
	if total != rep.total || passed != rep.passed {
		return rep, out, fmt.Errorf("h2spec says %d/%d passed, its report %d/%d", passed, total, rep.passed, rep.total)
	}
	return rep, out, nil
}

var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

// parseH2specReport reads h2spec's JUnit report: one testsuite per section,
// one testcase per case, a failure or error element when it failed.
func parseH2specReport(b []byte) (h2specReport, error) {
	var doc struct {
		Suites []struct {
			Cases []struct {
				Package   string `xml:"package,attr"`
				ClassName string `xml:"classname,attr"`
				Failure   *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Text string `xml:",chardata"`
				} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return h2specReport{}, fmt.Errorf("h2spec's report: %w", err)
	}
	var rep h2specReport
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			rep.total++
			switch {
			case c.Failure != nil:
				rep.failed = append(rep.failed, h2specCase{c.Package + ": " + c.ClassName, explain(c.Failure.Text)})
			case c.Error != nil:
				rep.failed = append(rep.failed, h2specCase{c.Package + ": " + c.ClassName, explain(c.Error.Text)})
			case c.Skipped == nil:
				rep.passed++
			}
		}
	}
	if rep.total == 0 {
		return rep, fmt.Errorf("h2spec's report holds no cases")
	}
	return rep, nil
}
