// Command etcd is upstream's go.etcd.io/etcd/server/v3 main, built from a pinned module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
