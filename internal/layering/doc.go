// Package layering holds no code: its test keeps the import rules between
// Granary's layers (the gateway talks to grains only through the typed
// clients; a saga knows its participants only as interfaces it declares),
// so that a convenient import does not quietly undo them.
package layering
