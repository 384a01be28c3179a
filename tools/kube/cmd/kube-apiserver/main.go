// Command kube-apiserver is the upstream kube-apiserver, built from k8s.io/kubernetes the way
// sigs.k8s.io/scheduler-plugins builds its kube-scheduler: the same command, our own module.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob, as upstream's main

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream's main
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
