// Command cert-manager-controller runs the real cert-manager controllers that the b2ckeys
// cluster test tier needs, against any API server named by a kubeconfig.
//
// cert-manager's own binary lives in its cmd/controller module, which the Go module proxy does
// not serve; the controllers themselves live in the main module (pkg/controller/...), register
// themselves in controllerpkg.Known() from init functions, and take their clients from a
// controllerpkg.ContextFactory. This main does what cmd/controller/app does with them, minus
// leader election, webhooks, ACME, metrics and the health server: it imports exactly the
// controllers listed in wantedControllers, builds one ContextFactory with cert-manager's
// default options, constructs each controller, starts the shared informers and runs them
// until SIGINT or SIGTERM.
//
// scripts/go-tools builds it from a throwaway module whose go.mod pins cert-manager.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// The Issuer and ClusterIssuer controllers look issuer backends up in pkg/issuer's
	// registry, which these two packages fill from their init functions.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// The controllers a Certificate needs from creation to a Ready Secret with a SelfSigned or CA
// issuer, and its renewals (trigger) and revision history (revisionmanager).
var wantedControllers = []string{
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	issuers.ControllerName,
	clusterissuers.ControllerName,
}

// Defaults of cert-manager's ControllerConfiguration (internal/apis/config/controller/v1alpha1,
// which another module cannot import) for the options these controllers read.
var (
	defaultCopiedAnnotationPrefixes = []string{
		"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/",
	}
	defaultMinimumBackoff = 1 * time.Hour
	defaultMaximumBackoff = 32 * time.Hour
)

const readyLine = "cert-manager-controller: caches synced, controllers running:"

// buildKey is stamped by scripts/go-tools (the cert-manager version and a digest of this file);
// --version prints it so a cached binary proves which source it was built from.
var buildKey = "unknown"

func main() {
	os.Exit(run())
}

func run() int {
	flags := flag.NewFlagSet("cert-manager-controller", flag.ContinueOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the API server to run against (required)")
	clusterResourceNamespace := flags.String("cluster-resource-namespace", "kube-system",
		"namespace holding the Secrets that ClusterIssuers reference (a CA issuer's key pair)")
	namespace := flags.String("namespace", "", "watch only this namespace (default: all); ClusterIssuers are then not reconciled")
	workers := flags.Int("workers", 5, "workers per controller, as cert-manager runs them")
	qps := flags.Float64("kube-api-qps", 20, "client-side QPS towards the API server when it lacks API Priority and Fairness")
	burst := flags.Int("kube-api-burst", 50, "client-side burst, as above")
	printVersion := flags.Bool("version", false, "print the cert-manager version this was built from and exit")
	klog.InitFlags(flags)
	if err := flags.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *printVersion {
		fmt.Printf("cert-manager-controller %s (cert-manager %s)\n", buildKey, util.AppVersion)
		return 0
	}
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cert-manager-controller: --kubeconfig is required")
		return 2
	}
	logf.InitLogs()
	defer logf.FlushLogs()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")

	options := controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   float32(*qps),
		KubernetesAPIBurst: *burst,
		Namespace:          *namespace,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace:        *clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CopiedAnnotationPrefixes:                 defaultCopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: defaultMinimumBackoff,
			CertificateRequestMaximumBackoffDuration: defaultMaximumBackoff,
		},
	}
	factory, err := controllerpkg.NewContextFactory(ctx, options)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: building the controller context: %v\n", err)
		return 1
	}

	names := selectedControllers(*namespace)
	known := controllerpkg.Known()
	running := make(map[string]controllerpkg.Interface, len(names))
	for _, name := range names {
		construct, ok := known[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "cert-manager-controller: controller %q is not registered\n", name)
			return 1
		}
		controller, err := construct(factory)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cert-manager-controller: constructing %s: %v\n", name, err)
			return 1
		}
		running[name] = controller
	}

	// Every Context built by the factory shares its informer factories; the controllers have
	// registered their informers on them, so they can start now (as cmd/controller/app does).
	shared, err := factory.Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		return 1
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	var group sync.WaitGroup
	failed := make(chan error, len(running))
	for name, controller := range running {
		group.Go(func() {
			if err := controller.Run(*workers, ctx); err != nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	shared.SharedInformerFactory.WaitForCacheSync(ctx.Done())
	shared.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done())
	if ctx.Err() == nil {
		// Tests wait for this line before creating Certificates.
		fmt.Fprintln(os.Stderr, readyLine, strings.Join(names, ","))
	}

	select {
	case err := <-failed:
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		stop()
		group.Wait()
		return 1
	case <-ctx.Done():
		group.Wait()
		return 0
	}
}

func selectedControllers(namespace string) []string {
	names := make([]string, 0, len(wantedControllers))
	for _, name := range wantedControllers {
		// cert-manager skips cluster-scoped issuers when it is confined to one namespace.
		if namespace != "" && name == clusterissuers.ControllerName {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
