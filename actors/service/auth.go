package service

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"granary/messages"
)

// AuthService is the name of the password service.
const AuthService = messages.AuthServiceName

// Argon2id parameters (OWASP's second recommendation: 19 MiB, 2 passes,
// one lane). Memory is per hash in flight, and each instance hashes one at
// a time, so instances per member bound the total.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	saltLen      = 16
)

// MaxPasswordLen bounds the work one request can ask for.
const MaxPasswordLen = messages.MaxPasswordLen

// Auth serves HashPassword and VerifyPassword.
func Auth(_ context.Context, req *messages.ServiceRequest) (*messages.ServiceReply, error) {
	switch call := req.GetCall().(type) {
	case *messages.ServiceRequest_HashPassword:
		enc, err := HashPassword(call.HashPassword.GetPassword())
		if err != nil {
			return nil, err
		}
		return &messages.ServiceReply{Result: &messages.ServiceReply_PasswordHash{PasswordHash: enc}}, nil
	case *messages.ServiceRequest_VerifyPassword:
		ok := VerifyPassword(call.VerifyPassword.GetEncodedHash(), call.VerifyPassword.GetPassword())
		return &messages.ServiceReply{Result: &messages.ServiceReply_PasswordOk{PasswordOk: ok}}, nil
	}
	return nil, messages.Fail(messages.CodeValidationFailed, "auth: unknown call %T", req.GetCall())
}

// HashPassword returns a PHC-encoded argon2id hash with a fresh salt.
func HashPassword(password string) (string, error) {
	if len(password) > MaxPasswordLen {
		return "", messages.Fail(messages.CodeValidationFailed, "password: at most %d bytes", MaxPasswordLen)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded. It does the full
// hashing work even for a malformed encoding (with default parameters), so
// its time does not tell a caller which case it hit.
func VerifyPassword(encoded, password string) bool {
	p, err := parsePHC(encoded)
	valid := err == nil
	if !valid {
		p = phc{time: argonTime, memory: argonMemory, threads: argonThreads, salt: make([]byte, saltLen), key: make([]byte, argonKeyLen)}
	}
	if len(password) > MaxPasswordLen {
		password = password[:MaxPasswordLen]
		valid = false
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1 && valid
}

// DummyHash is verified against when a user does not exist, so a failed
// login costs the same whether the username or the password was wrong.
var DummyHash = func() string {
	h, err := HashPassword("granary: no such user")
	if err != nil {
		panic(err)
	}
	return h
}()

type phc struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

func parsePHC(s string) (phc, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return phc{}, errors.New("not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return phc{}, errors.New("unsupported argon2 version")
	}
	var p phc
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return phc{}, fmt.Errorf("argon2 parameters: %w", err)
	}
	// Refuse parameters that would make one verification a denial of
	// service; hashes are only ever written by HashPassword.
	if p.memory == 0 || p.memory > 256*1024 || p.time == 0 || p.time > 10 || p.threads == 0 || p.threads > 8 {
		return phc{}, errors.New("argon2 parameters out of range")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return phc{}, fmt.Errorf("salt: %w", err)
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return phc{}, errors.New("key: malformed")
	}
	return p, nil
}
