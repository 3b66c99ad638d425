package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "strata/gen/catalog/v1"
	typev1 "strata/gen/type/v1"
)

// The statements, prepared on every connection under these names. A command
// makes the round trips Strata's catalog makes (one statement reading the
// product and the record, one writing everything), written by hand for this
// one command: the columns that change, one event.
const (
	columns = "id, sku, name, description, price_minor, currency, status, version, created_at, updated_at"

	getProduct = "get_product"
	// The product a command acts on and the idempotency record of its request
	// id, either of them possibly missing, in one round trip.
	loadForCommand = "load_for_command"
	// The version-checked update, the idempotency record and the outbox row in
	// one statement, hence one transaction; it counts 0 when the version moved.
	// The event's position follows the store's rule (domain/store/src/postgres.rs):
	// the transaction id times 1024 plus its index in the transaction.
	changePrice = "change_price"
	// The record a concurrent request with the same request id committed.
	selectRecorded = "select_recorded"
)

var statements = map[string]string{
	getProduct: "select " + columns + " from product where id = $1",
	loadForCommand: "select a.*, i.fingerprint, i.result from (select 1) as one " +
		"left join (select " + columns + " from product where id = $1) as a on true " +
		"left join idempotency as i on i.request_id = $2",
	changePrice: "with changed as (" +
		"update product set price_minor = $3, currency = $4, version = $5, updated_at = $6 " +
		"where id = $1 and version = $2 returning 1), " +
		"recorded as (insert into idempotency (request_id, fingerprint, result, created_at) " +
		"select $7, $8, $9, $6 from changed), " +
		"events as (insert into outbox (position, event_id, aggregate_id, aggregate_version, event_type, " +
		"payload, occurred_at) select pg_current_xact_id()::text::int8 * 1024 + 1, $10, $1, $5, " +
		"'catalog.product.price_changed', $11, $6 from changed) " +
		"select count(*) from changed",
	selectRecorded: "select fingerprint, result from idempotency where request_id = $1",
}

// conflictAttempts bounds how often a command whose write lost to a concurrent
// change is decided again (Strata's kernel: CONFLICT_RETRIES).
const conflictAttempts = 3

type productService struct {
	catalogv1.UnimplementedProductServiceServer
	pool *pgxpool.Pool
}

// product is a product row, and the snapshot an idempotency record keeps (the
// JSON of Strata's ProductSnapshot, so either service replays the other's).
type product struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceMinor  int64     `json:"price_minor"`
	Currency    string    `json:"currency"`
	Status      string    `json:"status"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// recordedResult is what an idempotency record keeps: the product as the
// command left it, versioned as Strata versions it.
type recordedResult struct {
	V       string  `json:"v"`
	Product product `json:"product"`
}

// priceChanged is the payload of the outbox event.
type priceChanged struct {
	Type       string `json:"type"`
	PriceMinor int64  `json:"price_minor"`
	Currency   string `json:"currency"`
}

var statuses = map[string]catalogv1.ProductStatus{
	"draft":     catalogv1.ProductStatus_PRODUCT_STATUS_DRAFT,
	"published": catalogv1.ProductStatus_PRODUCT_STATUS_PUBLISHED,
	"retired":   catalogv1.ProductStatus_PRODUCT_STATUS_RETIRED,
}

func (p *product) message() *catalogv1.Product {
	return &catalogv1.Product{
		Id:          p.ID,
		Sku:         p.SKU,
		Name:        p.Name,
		Description: p.Description,
		Price:       &typev1.Money{CurrencyCode: p.Currency, AmountMinor: p.PriceMinor},
		Status:      statuses[p.Status],
		Version:     uint64(p.Version),
		CreateTime:  timestamppb.New(p.CreatedAt),
		UpdateTime:  timestamppb.New(p.UpdatedAt),
	}
}

func (s *productService) GetProduct(ctx context.Context, req *catalogv1.GetProductRequest) (*catalogv1.GetProductResponse, error) {
	id, ok := parseUUID(req.GetId())
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "id: must be a UUID")
	}
	var p product
	err := s.pool.QueryRow(ctx, getProduct, id).Scan(
		&p.ID, &p.SKU, &p.Name, &p.Description, &p.PriceMinor, &p.Currency, &p.Status, &p.Version,
		&p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "product %s not found", req.GetId())
	}
	if err != nil {
		return nil, storeError(ctx, err)
	}
	return &catalogv1.GetProductResponse{Product: p.message()}, nil
}

// changePriceCommand is a validated ChangePrice request.
type changePriceCommand struct {
	id              [16]byte
	requestID       string
	expectedVersion *int64
	currency        string
	amountMinor     int64
	fingerprint     []byte
}

func parseChangePrice(req *catalogv1.ChangePriceRequest) (*changePriceCommand, error) {
	var problems []string
	cmd := &changePriceCommand{requestID: req.GetRequestId()}
	id, ok := parseUUID(req.GetId())
	if !ok {
		problems = append(problems, "id: must be a UUID")
	}
	cmd.id = id
	if !validRequestID(cmd.requestID) {
		problems = append(problems, "request_id: 1 to 128 printable ASCII characters without spaces")
	}
	if req.ExpectedVersion != nil {
		if *req.ExpectedVersion == 0 || *req.ExpectedVersion > 1<<63-1 {
			problems = append(problems, "expected_version: must be at least 1 when given")
		}
		v := int64(*req.ExpectedVersion)
		cmd.expectedVersion = &v
	}
	if price := req.GetPrice(); price == nil {
		problems = append(problems, "price: is required")
	} else {
		cmd.currency, cmd.amountMinor = price.GetCurrencyCode(), price.GetAmountMinor()
		if !validCurrency(cmd.currency) {
			problems = append(problems, "price.currency_code: must be three upper-case letters")
		}
		if cmd.amountMinor <= 0 {
			problems = append(problems, "price.amount_minor: must be greater than zero")
		}
	}
	if len(problems) > 0 {
		return nil, status.Error(codes.InvalidArgument, strings.Join(problems, "; "))
	}
	// The fingerprint of the validated command, in Strata's canonical encoding
	// (`ChangePrice\0[expected_version,[id,[currency,amount]]]`).
	expected := "null"
	if cmd.expectedVersion != nil {
		expected = strconv.FormatInt(*cmd.expectedVersion, 10)
	}
	cmd.fingerprint = []byte(fmt.Sprintf("ChangePrice\x00[%s,[%q,[%q,%d]]]",
		expected, formatUUID(cmd.id), cmd.currency, cmd.amountMinor))
	return cmd, nil
}

func (s *productService) ChangePrice(ctx context.Context, req *catalogv1.ChangePriceRequest) (*catalogv1.ChangePriceResponse, error) {
	cmd, err := parseChangePrice(req)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		current, recorded, err := s.loadForCommand(ctx, cmd)
		if err != nil {
			return nil, err
		}
		if recorded != nil {
			return replay(recorded, cmd)
		}
		if current == nil {
			return nil, status.Errorf(codes.NotFound, "product %s not found", formatUUID(cmd.id))
		}
		if cmd.expectedVersion != nil && *cmd.expectedVersion != current.Version {
			return nil, status.Errorf(codes.Aborted, "expected version %d, current version %d",
				*cmd.expectedVersion, current.Version)
		}
		if current.Status == "retired" {
			return nil, status.Error(codes.FailedPrecondition, "a retired product cannot change")
		}

		now := time.Now().UTC().Truncate(time.Microsecond)
		changed := *current
		changed.PriceMinor, changed.Currency = cmd.amountMinor, cmd.currency
		changed.Version++
		changed.UpdatedAt = now
		result, err := json.Marshal(recordedResult{V: "1", Product: changed})
		if err != nil {
			return nil, internal(err)
		}
		payload, err := json.Marshal(priceChanged{Type: "price_changed", PriceMinor: cmd.amountMinor, Currency: cmd.currency})
		if err != nil {
			return nil, internal(err)
		}
		eventID, err := newEventID(now)
		if err != nil {
			return nil, internal(err)
		}
		var written int64
		err = s.pool.QueryRow(ctx, changePrice, cmd.id, current.Version, cmd.amountMinor, cmd.currency,
			changed.Version, now, cmd.requestID, cmd.fingerprint, result, eventID, payload).Scan(&written)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "idempotency_pkey":
			// A concurrent request with this request id committed first: its result is ours.
			return s.replayCommitted(ctx, cmd)
		case err != nil:
			return nil, storeError(ctx, err)
		case written == 1:
			return &catalogv1.ChangePriceResponse{Product: changed.message()}, nil
		case attempt >= conflictAttempts:
			return nil, status.Errorf(codes.Aborted, "product %s was changed concurrently", formatUUID(cmd.id))
		}
		// The version moved between the read and the write: read again and decide again.
	}
}

// loadForCommand reads the product a command acts on and the idempotency
// record of its request id; either may be nil.
func (s *productService) loadForCommand(ctx context.Context, cmd *changePriceCommand) (*product, *recorded, error) {
	var (
		id, sku, name, description, currency, state *string
		priceMinor, version                         *int64
		createdAt, updatedAt                        *time.Time
		fingerprint, result                         []byte
	)
	err := s.pool.QueryRow(ctx, loadForCommand, cmd.id, cmd.requestID).Scan(
		&id, &sku, &name, &description, &priceMinor, &currency, &state, &version, &createdAt, &updatedAt,
		&fingerprint, &result)
	if err != nil {
		return nil, nil, storeError(ctx, err)
	}
	var rec *recorded
	if fingerprint != nil {
		rec = &recorded{fingerprint: fingerprint, result: result}
	}
	if id == nil {
		return nil, rec, nil
	}
	return &product{
		ID: *id, SKU: *sku, Name: *name, Description: *description, PriceMinor: *priceMinor,
		Currency: *currency, Status: *state, Version: *version, CreatedAt: *createdAt, UpdatedAt: *updatedAt,
	}, rec, nil
}

// recorded is an idempotency record as stored.
type recorded struct {
	fingerprint []byte
	result      []byte
}

func (s *productService) replayCommitted(ctx context.Context, cmd *changePriceCommand) (*catalogv1.ChangePriceResponse, error) {
	var rec recorded
	if err := s.pool.QueryRow(ctx, selectRecorded, cmd.requestID).Scan(&rec.fingerprint, &rec.result); err != nil {
		return nil, storeError(ctx, err)
	}
	return replay(&rec, cmd)
}

// replay answers a command already carried out under its request id with the
// first result, or refuses a different command under the same key.
func replay(rec *recorded, cmd *changePriceCommand) (*catalogv1.ChangePriceResponse, error) {
	if string(rec.fingerprint) != string(cmd.fingerprint) {
		return nil, status.Error(codes.InvalidArgument, "request_id: already used for a different request")
	}
	var result recordedResult
	if err := json.Unmarshal(rec.result, &result); err != nil || result.V != "1" {
		return nil, internal(fmt.Errorf("unreadable idempotency record: %v", err))
	}
	return &catalogv1.ChangePriceResponse{Product: result.Product.message()}, nil
}

// storeError is the status of a failed database call: the caller's own
// cancellation or deadline as such, a refusal by the server as INTERNAL
// (logged, opaque), anything else (no connection) as UNAVAILABLE.
func storeError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return internal(err)
	}
	return status.Errorf(codes.Unavailable, "database unavailable: %v", err)
}

func internal(err error) error {
	log.Printf("internal error: %v", err)
	return status.Error(codes.Internal, "internal error")
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validCurrency(s string) bool {
	return len(s) == 3 && isUpper(s[0]) && isUpper(s[1]) && isUpper(s[2])
}

func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }

// parseUUID reads a UUID in its hyphenated or its simple (32 hex digits) form.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) == 36 {
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return u, false
		}
		s = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	}
	if len(s) != 32 {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(s)); err != nil {
		return u, false
	}
	return u, true
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newEventID is a UUIDv7 (time-ordered), as Strata gives its events.
func newEventID(at time.Time) ([16]byte, error) {
	var u [16]byte
	if _, err := rand.Read(u[6:]); err != nil {
		return u, err
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(at.UnixMilli()))
	copy(u[:6], ms[2:])
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u, nil
}
