// Command projgen writes app/projects.go (see package projects). It runs
// from app/: `go generate ./app`, or `go run ./internal/projgen ROOT`.
package main

import (
	"fmt"
	"os"

	"dce/app/internal/projects"
)

func main() {
	root := ".."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if err := projects.Write(root); err != nil {
		fmt.Fprintln(os.Stderr, "projgen:", err)
		os.Exit(1)
	}
}
