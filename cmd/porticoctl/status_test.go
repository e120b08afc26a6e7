package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/e2e/apitest"
	"github.com/portico-lb/portico/speaker"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func ev(verb, ip, protocol, node string, via []string, at time.Duration) eventsv1.Event {
	reason := speaker.ReasonAnnounced
	if verb == "withdrawn" {
		reason = speaker.ReasonWithdrawn
	}
	a := speaker.Announcement{IP: netip.MustParseAddr(ip), Protocol: protocol, Via: via}
	return eventsv1.Event{Reason: reason, Note: speaker.Note(verb, a, node), EventTime: metav1.NewMicroTime(t0.Add(at))}
}

func TestAnnouncers(t *testing.T) {
	eth0 := []string{"eth0"}
	tests := []struct {
		name   string
		events []eventsv1.Event
		want   map[string]string // ip → "node/protocol" list, comma-separated
	}{
		{"one owner", []eventsv1.Event{ev("announcing", "192.0.2.1", "layer2", "n1", eth0, 0)}, map[string]string{"192.0.2.1": "n1/layer2"}},
		{"owner moved; the old one died silently", []eventsv1.Event{
			ev("announcing", "192.0.2.1", "layer2", "n1", eth0, 0),
			ev("announcing", "192.0.2.1", "layer2", "n2", eth0, time.Second),
		}, map[string]string{"192.0.2.1": "n2/layer2"}},
		{"owner moved back", []eventsv1.Event{
			ev("announcing", "192.0.2.1", "layer2", "n1", eth0, 0),
			ev("announcing", "192.0.2.1", "layer2", "n2", eth0, time.Second),
			ev("withdrawn", "192.0.2.1", "layer2", "n2", eth0, 2*time.Second),
			ev("announcing", "192.0.2.1", "layer2", "n1", eth0, 2*time.Second),
		}, map[string]string{"192.0.2.1": "n1/layer2"}},
		{"withdrawn, nobody else", []eventsv1.Event{
			ev("announcing", "192.0.2.1", "layer2", "n1", eth0, 0),
			ev("withdrawn", "192.0.2.1", "layer2", "n1", eth0, time.Second),
		}, map[string]string{}},
		{"BGP: every node still announcing", []eventsv1.Event{
			ev("announcing", "192.0.2.1", "bgp", "n1", []string{"router"}, 0),
			ev("announcing", "192.0.2.1", "bgp", "n2", []string{"router"}, time.Second),
			ev("announcing", "192.0.2.1", "bgp", "n3", []string{"router"}, time.Second),
			ev("withdrawn", "192.0.2.1", "bgp", "n3", []string{"router"}, 2*time.Second),
		}, map[string]string{"192.0.2.1": "n2/bgp,n1/bgp"}},
		{"a note from something else is ignored", []eventsv1.Event{{Reason: speaker.ReasonAnnounced, Note: "hello"}}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for ip, list := range Announcers(tt.events) {
				var s []string
				for _, a := range list {
					s = append(s, a.Node+"/"+a.Protocol)
				}
				got[ip] = strings.Join(s, ",")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for ip, w := range tt.want {
				if got[ip] != w {
					t.Fatalf("%s: got %q, want %q", ip, got[ip], w)
				}
			}
		})
	}
}

// TestStatusCommand runs `porticoctl status` against a real API server
// holding a Service, its address and a speaker's Event.
func TestStatusCommand(t *testing.T) {
	env, err := apitest.Start()
	apitest.Need(t, err)
	defer env.Stop()
	ctx := context.Background()
	mk := func(name string, class *string, ip string) *corev1.Service {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{speaker.AnnotationAllocatedFrom: "lan"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if err := env.Client.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		if ip != "" {
			svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
			if err := env.Client.Status().Update(ctx, svc); err != nil {
				t.Fatal(err)
			}
		}
		return svc
	}
	web := mk("web", nil, "192.0.2.10")
	mk("waiting", nil, "")
	other := "example.com/other"
	mk("not-ours", &other, "")
	a := speaker.Announcement{IP: netip.MustParseAddr("192.0.2.10"), Protocol: speaker.ProtocolL2, Via: []string{"eth0"}}
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: "default", Name: "web.announced"},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "portico.dev/speaker",
		ReportingInstance:   "n1",
		Action:              "Announce",
		Reason:              speaker.ReasonAnnounced,
		Type:                corev1.EventTypeNormal,
		Regarding:           corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "web", UID: web.UID, APIVersion: "v1"},
		Note:                speaker.Note("announcing", a, "n1"),
	}
	if err := env.Client.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"--kubeconfig", env.Kubeconfig, "status"}, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows (web, waiting; not-ours is another class), got:\n%s", out.String())
	}
	wantRows := map[string][]string{
		"web":     {"default", "web", "192.0.2.10", "lan", "n1", "layer2", "eth0"},
		"waiting": {"default", "waiting", "<pending>", "lan", "-", "-", "-"},
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		want, ok := wantRows[f[1]]
		if !ok || strings.Join(f, " ") != strings.Join(want, " ") {
			t.Errorf("row %q, want %q", strings.Join(f, " "), strings.Join(want, " "))
		}
	}
}
