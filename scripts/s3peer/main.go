// An S3-compatible server for cloudlet's backup tests: gofakes3's S3 implementation (its
// in-memory backend) behind TLS, with every request's AWS Signature Version 4 checked by
// re-signing it with the AWS SDK's own signer. gofakes3 alone accepts any signature; this
// wrapper is what makes a wrong one fail as it would on a real service.
//
// Usage: s3peer -cert C -key K -access-key AK -secret-file F -bucket B [-listen ADDR]
// Prints "listening on HOST:PORT" once it serves.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

type auth struct {
	access, secret string
	next           http.Handler
}

func deny(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
}

func field(authz, name string) string {
	for _, part := range strings.Split(strings.TrimPrefix(authz, "AWS4-HMAC-SHA256 "), ",") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, name+"=") {
			return strings.TrimPrefix(part, name+"=")
		}
	}
	return ""
}

func (a *auth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Get("Authorization")
	if !strings.HasPrefix(authz, "AWS4-HMAC-SHA256 ") {
		deny(w, "AccessDenied", "a Signature Version 4 Authorization header is required")
		return
	}
	cred := strings.Split(field(authz, "Credential"), "/")
	if len(cred) != 5 || cred[0] != a.access || cred[3] != "s3" || cred[4] != "aws4_request" {
		deny(w, "InvalidAccessKeyId", "unknown access key or malformed credential scope")
		return
	}
	signed := strings.Split(field(authz, "SignedHeaders"), ";")
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		deny(w, "AccessDenied", "X-Amz-Date is missing or malformed")
		return
	}
	if d := time.Since(when); d > 15*time.Minute || d < -15*time.Minute {
		deny(w, "RequestTimeTooSkewed", "the request time is too far from the server's")
		return
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		deny(w, "AccessDenied", "X-Amz-Content-Sha256 is required")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if payload != "UNSIGNED-PAYLOAD" && !strings.HasPrefix(payload, "STREAMING-") {
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != payload {
			deny(w, "XAmzContentSHA256Mismatch", "the body does not hash to X-Amz-Content-Sha256")
			return
		}
	}
	// Re-sign a copy that carries exactly the headers the client signed.
	c := r.Clone(context.Background())
	c.Header = http.Header{}
	c.ContentLength = 0
	c.Body = http.NoBody
	for _, h := range signed {
		switch h {
		case "host":
		case "content-length":
			c.ContentLength = r.ContentLength
		default:
			c.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	c.Header.Del("X-Amz-Date")
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	creds := aws.Credentials{AccessKeyID: a.access, SecretAccessKey: a.secret}
	if err := signer.SignHTTP(context.Background(), creds, c, payload, "s3", cred[2], when); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	want := c.Header.Get("Authorization")
	if field(want, "Signature") != field(authz, "Signature") {
		deny(w, "SignatureDoesNotMatch", fmt.Sprintf("signed headers %q, expected %q", field(authz, "SignedHeaders"), field(want, "SignedHeaders")))
		return
	}
	a.next.ServeHTTP(w, r)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	access := flag.String("access-key", "", "the one access key accepted")
	secretFile := flag.String("secret-file", "", "a file holding its secret key")
	bucket := flag.String("bucket", "", "a bucket made at start")
	flag.Parse()
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Fatal(err)
	}
	backend := s3mem.New()
	if *bucket != "" {
		if err := backend.CreateBucket(*bucket); err != nil {
			log.Fatal(err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: &auth{access: *access, secret: strings.TrimSpace(string(secret)), next: faker.Server()}}
	log.Fatal(srv.ServeTLS(ln, *cert, *key))
}
