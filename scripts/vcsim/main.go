// vcsim for cloudlet's tests: govmomi's vCenter simulator (the VPX inventory: datacenter
// DC0, cluster DC0_C0, datastore LocalDS_0, distributed switch DVS0 with DC0_DVPG0, and a
// few VMs that are not cloudlet's) on a loopback address, with the TLS certificate the test
// harness made. Prints the SDK URL on its first line, then serves until killed.
//
// Delays make it behave like a real vCenter, whose tasks take seconds: -task-delay MS for
// every task's execution, -method-delay NAME:MS,... before answering an API method.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on (loopback only)")
	cert := flag.String("cert", "", "server certificate (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	taskDelay := flag.Int("task-delay", 0, "milliseconds every task takes")
	methodDelay := flag.String("method-delay", "", "NAME:MS,... delays before answering these methods")
	flag.Parse()

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()
	if *taskDelay > 0 {
		simulator.TaskDelay.Delay = *taskDelay
		// Do not hold the entity's lock while a task waits: tasks on different VMs (and
		// property reads) go on side by side, as on a real vCenter.
		simulator.TaskDelay.MethodDelay = map[string]int{"LockHandoff": 0}
	}
	if *methodDelay != "" {
		model.DelayConfig.MethodDelay = map[string]int{}
		for _, pair := range strings.Split(*methodDelay, ",") {
			name, ms, ok := strings.Cut(pair, ":")
			n, err := strconv.Atoi(ms)
			if !ok || err != nil {
				log.Fatalf("-method-delay: `%s` is not NAME:MS", pair)
			}
			model.DelayConfig.MethodDelay[name] = n
		}
	}
	model.Service.Listen = &url.URL{Host: *listen}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	server := model.Service.NewServer()
	defer server.Close()
	u := *server.URL
	u.User = nil
	fmt.Println(u.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
