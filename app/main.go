// Command dce is the program behind the ./dce launcher: it runs the engine's
// commands (websocket start|stop|reload|status, routes, check) and the CLI
// nodes of every project. Project code is compiled in through the blank
// imports of projects.go, which `go generate` (run by ./dce) refreshes.
package main

//go:generate go run ./internal/projgen

import (
	"os"

	"dce/app/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Env{Compiled: compiled}))
}
