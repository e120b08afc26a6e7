package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The outputs in testdata are real runs of Debian's wrk 4.1.0 and h2load
// 1.52 (socket errors added by hand to an otherwise clean wrk run).
func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		file     string
		wantErr  string
		rps      float64
		p50, p99 time.Duration
	}{
		{file: "wrk-ok.txt", rps: 32038.32, p50: 46 * time.Microsecond, p99: 126 * time.Microsecond},
		{file: "wrk-non2xx.txt", wantErr: "34608 answers outside 2xx"},
		{file: "wrk-socket-errors.txt", wantErr: "socket errors"},
		{file: "wrk-refused.txt", wantErr: "could not connect"},
		{file: "h2load-ok.txt", wantErr: "no Requests/sec"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r, err := parseWrk(readTestdata(t, tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.rps != tc.rps || r.p50 != tc.p50 || r.p99 != tc.p99 {
				t.Errorf("got %.2f req/s, p50 %s, p99 %s; want %.2f, %s, %s", r.rps, r.p50, r.p99, tc.rps, tc.p50, tc.p99)
			}
		})
	}
}

func TestParseH2load(t *testing.T) {
	for _, tc := range []struct {
		file    string
		wantErr string
		rps     float64
	}{
		{file: "h2load-ok.txt", rps: 23891},
		{file: "h2load-tls12.txt", wantErr: "TLS 1.3"},
		{file: "h2load-4xx.txt", wantErr: "outside 2xx"},
		{file: "h2load-no-tls.txt", wantErr: "did not negotiate h2"},
		{file: "wrk-ok.txt", wantErr: "did not negotiate h2"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r, err := parseH2load(readTestdata(t, tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.rps != tc.rps {
				t.Errorf("got %.2f req/s, want %.2f", r.rps, tc.rps)
			}
		})
	}
}

func TestParseH2loadLog(t *testing.T) {
	lat, err := parseH2loadLog(strings.NewReader(string(readTestdata(t, "h2load.log"))))
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 100 {
		t.Fatalf("got %d latencies, want 100", len(lat))
	}
	if p50, p99 := percentile(lat, 50), percentile(lat, 99); !(lat[0] <= p50 && p50 <= p99 && p99 <= lat[99]) || p50 == 0 {
		t.Errorf("p50 %s, p99 %s out of [%s, %s]", p50, p99, lat[0], lat[99])
	}
	for _, bad := range []string{"1\t404\t100\n", "1\t200\n", "1\t200\tx\n", ""} {
		if _, err := parseH2loadLog(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one = %d, want 7", got)
	}
}

// testdata/h2spec.xml is h2spec 2.2.1's JUnit report of three sections
// against Go's net/http; h2spec files every failure as an error element.
func TestParseH2specReport(t *testing.T) {
	rep, err := parseH2specReport(readTestdata(t, "h2spec.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.total != 6 || rep.passed != 3 || len(rep.failed) != 3 {
		t.Fatalf("got %d/%d passed, %d failed; want 3/6, 3", rep.passed, rep.total, len(rep.failed))
	}
	f := rep.failed[0]
	if f.name != "http2/6.5.3: Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE" {
		t.Errorf("first failure named %q", f.name)
	}
	if want := "expected SETTINGS Frame (length:0, flags:0x01, stream_id:0); got Connection closed"; f.why != want {
		t.Errorf("first failure explained %q, want %q", f.why, want)
	}
	if _, err := parseH2specReport([]byte("<testsuites></testsuites>")); err == nil {
		t.Error("an empty report: no error")
	}
}

func TestStatusField(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t  20000 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	if v, err := statusField(status, "VmRSS"); err != nil || v != 10240 {
		t.Errorf("VmRSS = %d, %v; want 10240", v, err)
	}
	if _, err := statusField(status, "VmSwap"); err == nil {
		t.Error("VmSwap: no error")
	}
}
