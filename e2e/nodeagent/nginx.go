package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
)

// nginx writes a configuration that behaves as the official image's: a
// server on port 80 (both families) for /usr/share/nginx/html, defined in
// /etc/nginx/conf.d/default.conf so a ConfigMap mounted over conf.d
// replaces it, as tutorials expect. Logs go to the container's log.
func (w *worker) nginx(c *ctr, user []Mount) ([]string, []Mount, error) {
	dir := filepath.Join(w.dir, "nginx-"+c.spec.Name)
	confd := filepath.Join(dir, "conf.d")
	for _, d := range []string{confd, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	main := fmt.Sprintf(`user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include /etc/nginx/conf.d/*.conf;
}
`, dir)
	def := `server {
    listen 80;
    listen [::]:80;
    server_name localhost;
    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(confd, "default.conf"), []byte(def), 0o644); err != nil {
		return nil, nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	var extra []Mount
	confdMounted := false
	for _, m := range user {
		switch m.Target {
		case "/etc/nginx/nginx.conf":
			conf = m.Target
		case "/etc/nginx/conf.d":
			confdMounted = true
		}
	}
	if !confdMounted {
		extra = append(extra, Mount{Source: confd, Target: "/etc/nginx/conf.d", ReadOnly: true})
	}
	return []string{"/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"}, extra, nil
}
