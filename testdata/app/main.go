// Command app is the test app host's web server for the rollout end-to-end
// test: it serves the version file that the installed test RPM ships. Like
// httpd it reads its content at start and only picks up a new version on a
// graceful restart (SIGHUP), so a rollout that updates the package without
// restarting would be caught. It is a test fixture, not part of repoctl.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	file := flag.String("file", "", "version file to serve (inside the host's installroot)")
	pidfile := flag.String("pidfile", "", "where to write the pid (the restart command signals it)")
	fail := flag.String("fail", "", "while this file exists, /health answers 500")
	logf := flag.String("log", "", "append one line per (re)load: unix-time version")
	flag.Parse()

	var mu sync.RWMutex
	var version string
	load := func() {
		b, err := os.ReadFile(*file)
		if err != nil {
			b = []byte("none\n")
		}
		mu.Lock()
		version = string(b)
		mu.Unlock()
		if *logf != "" {
			if f, err := os.OpenFile(*logf, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintf(f, "%.6f %s", float64(time.Now().UnixNano())/1e9, b)
				f.Close()
			}
		}
	}
	load()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			load()
		}
	}()
	http.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		defer mu.RUnlock()
		fmt.Fprint(w, version)
	})
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(*fail); *fail != "" && err == nil {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		mu.RLock()
		defer mu.RUnlock()
		fmt.Fprint(w, "ok ", version)
	})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(l, nil))
}
