// Command catalog-server is strata.catalog.v1.ProductService in plain Go: the
// benchmark's Go peer, the stack a go-zero or Kratos user would otherwise run.
//
// A grpc-go server over a pgx pool (pgxpool), serving the same tables as
// Strata's catalog context (schema `catalog`, created by Strata's migrations).
// Only GetProduct and ChangePrice are implemented; the other methods answer
// UNIMPLEMENTED. It is not part of Strata.
//
//	catalog-server --listen 127.0.0.1:0 --dsn postgres://...
//
// (built by bench/go/build.sh). Prints `listening on HOST:PORT` once ready;
// SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
	"google.golang.org/grpc"

	catalogv1 "strata/gen/catalog/v1"
)

// maxConns is the pool's size: Strata's default per context
// (strata_store::DEFAULT_MAX_CONNECTIONS).
const maxConns = 8

func main() {
	listen := flag.String("listen", "127.0.0.1:50053", "host:port to serve gRPC on (port 0: any free port)")
	dsn := flag.String("dsn", "", "postgres://user:password@host:port/db")
	flag.Parse()
	if *dsn == "" {
		log.Fatal("--dsn is required")
	}

	config, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		log.Fatalf("--dsn: %v", err)
	}
	config.MaxConns = maxConns
	// The same session settings as Strata's store: the context's schema and a
	// statement time-out.
	config.ConnConfig.RuntimeParams["search_path"] = "catalog"
	config.ConnConfig.RuntimeParams["statement_timeout"] = "30000"
	config.AfterConnect = prepare

	ctx := context.Background()
	pool, err := pgxpool.ConnectConfig(ctx, config)
	if err != nil {
		log.Fatalf("connecting to PostgreSQL: %v", err)
	}
	defer pool.Close()
	// Fail now, not on the first request, when the database is unreachable.
	if err := pool.Ping(ctx); err != nil {
		log.Fatalf("connecting to PostgreSQL: %v", err)
	}

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("--listen: %v", err)
	}
	server := grpc.NewServer()
	catalogv1.RegisterProductServiceServer(server, &productService{pool: pool})

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.GracefulStop()
	}()

	fmt.Printf("listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serving: %v", err)
	}
}

// prepare prepares every statement of the service on a new connection, so that
// requests only bind and execute.
func prepare(ctx context.Context, conn *pgx.Conn) error {
	for name, sql := range statements {
		if _, err := conn.Prepare(ctx, name, sql); err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
	}
	return nil
}
