// Package dashboard owns the operator's page: static HTML, CSS and
// JavaScript embedded in the binary (no build step, no CDN) that read the
// admin API and the live stream and show the cluster at a glance.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the page at / and its assets under /assets/.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	assets := http.StripPrefix("/assets/", http.FileServer(http.FS(sub)))
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(index)
			return
		}
		assets.ServeHTTP(w, r)
	})
}

// Has reports whether the dashboard has an asset at name ("app.js"), so
// the gateway can answer its own problem+json 404 for anything else.
func Has(name string) bool {
	info, err := fs.Stat(files, "static/"+name)
	return err == nil && !info.IsDir()
}
