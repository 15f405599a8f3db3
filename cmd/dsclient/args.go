package main

import "flag"

// parseArgs parses args with fs and returns the positional arguments.
// Flags may come before, between and after them, as ipfs takes them
// (`dsclient add FILE -Q`): the flag package alone stops at the first
// argument that is not a flag. After "--" every argument is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
