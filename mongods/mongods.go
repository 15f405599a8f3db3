// Package mongods is a go-datastore on a MongoDB collection: the seed's
// `dscluster --mongodb=URI` shard store.
//
// Each key is one document, {_id: key, v: value, s: size}, written with a
// journaled write concern, so a Put returns once the value is durable. A
// value larger than a document may hold (BSON's 16 MiB) is stored in parts,
// in a second collection, under a generation of its own that the key's
// document names: a Put writes the new parts, replaces the document, then
// deletes the parts of the one it replaced, so a reader never mixes two.
//
// Err reports a database that cannot be reached: the node answers
// heartbeats with it, so the cluster treats the node as down, as it does a
// failed disk, and repairs around it until the database answers again.
package mongods

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	logging "github.com/ipfs/go-log/v2"
)

var log = logging.Logger("mongods")

// partSize is the largest value part one document holds, well under
// BSON's 16 MiB document limit.
const partSize = 8 << 20

// Options name where the store lives.
type Options struct {
	// Database is used when the URI names none.
	Database string
	// Collection holds the documents; Collection + "_parts" the parts of
	// large values.
	Collection string
	// CheckEvery is how often a background ping checks the database
	// (default 1 s).
	CheckEvery time.Duration
	// Timeout bounds server selection and connecting when the URI does
	// not (default 5 s): an unreachable database fails operations after it.
	Timeout time.Duration
}

// Datastore is a go-datastore on one MongoDB collection.
type Datastore struct {
	client *mongo.Client
	health *mongo.Client // one connection of its own: pings do not queue behind operations
	coll   *mongo.Collection
	parts  *mongo.Collection
	where  string // the URI without credentials, database and collection

	down  atomic.Pointer[error] // why the last ping failed, or nil
	nudge chan struct{}         // an operation failed as if unreachable: ping now
	gen   atomic.Uint64         // for part generations
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

var _ ds.Batching = (*Datastore)(nil)

// Open connects to the MongoDB at uri. A URI that does not parse is an
// error; a database that does not answer yet is not: the store starts
// down (Err) and comes up once a ping answers.
func Open(ctx context.Context, uri string, opts Options) (*Datastore, error) {
	if opts.Collection == "" {
		return nil, errors.New("mongodb shard store: no collection name")
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	cs, err := connstring.Parse(uri)
	if err != nil {
		// Its message may quote the URI, password and all.
		return nil, errors.New("mongodb shard store: the URI does not parse as a MongoDB connection string")
	}
	db := cs.Database
	if db == "" {
		db = opts.Database
	}
	name := redacted(cs)
	if db == "" {
		return nil, fmt.Errorf("mongodb shard store %s: the URI names no database and none is given", name)
	}
	// Defaults first: what the URI says overrides them.
	clientOptions := func() *options.ClientOptions {
		return options.Client().SetServerSelectionTimeout(opts.Timeout).SetConnectTimeout(opts.Timeout).ApplyURI(uri)
	}
	client, err := mongo.Connect(clientOptions())
	if err != nil {
		return nil, fmt.Errorf("mongodb shard store %s: connect: the client options are invalid", name)
	}
	health, err := mongo.Connect(clientOptions().SetMaxPoolSize(1))
	if err != nil {
		_ = client.Disconnect(ctx)
		return nil, fmt.Errorf("mongodb shard store %s: connect: the client options are invalid", name)
	}
	wc := options.Collection().SetWriteConcern(writeconcern.Journaled())
	d := &Datastore{
		client: client,
		health: health,
		coll:   client.Database(db).Collection(opts.Collection, wc),
		parts:  client.Database(db).Collection(opts.Collection+"_parts", wc),
		where:  fmt.Sprintf("%s (database %s, collection %s)", name, db, opts.Collection),
		nudge:  make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	d.gen.Store(uint64(time.Now().UnixNano()))
	if err := d.ping(ctx, opts.Timeout); err != nil {
		log.Warnw("mongodb shard store does not answer yet: this node serves once it does", "store", d.where, "err", err)
	}
	go d.check(opts.CheckEvery)
	return d, nil
}

// Collection is the name of the store's collection.
func (d *Datastore) Collection() string { return d.coll.Name() }

// redacted names the server of cs, with neither the credentials nor the
// options the URI carries: scheme, hosts and database.
func redacted(cs *connstring.ConnString) string {
	return fmt.Sprintf("%s://%s/%s", cs.Scheme, strings.Join(cs.Hosts, ","), cs.Database)
}

// Err reports why the database cannot be reached, or nil.
func (d *Datastore) Err() error {
	if p := d.down.Load(); p != nil {
		return *p
	}
	return nil
}

// check pings the database every interval, and at once when an operation
// failed as if it were unreachable.
func (d *Datastore) check(every time.Duration) {
	defer close(d.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.nudge:
		}
		_ = d.ping(context.Background(), every+time.Second)
	}
}

// ping asks the database whether it answers: only a ping sets or clears
// Err, so one failed operation (a connection reset) does not take the
// node down.
func (d *Datastore) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.health.Ping(ctx, nil); err != nil {
		err = fmt.Errorf("mongodb shard store %s: ping: %w", d.where, err)
		if d.down.Swap(&err) == nil {
			log.Errorw("mongodb shard store unreachable: this node takes no reads or writes until it answers", "store", d.where, "err", err)
		}
		return err
	}
	if d.down.Swap(nil) != nil {
		log.Infow("mongodb shard store answers again", "store", d.where)
	}
	return nil
}

// fail wraps err, an operation's failure, with the store's name; one that
// looks like an unreachable database (and not like the caller giving up)
// has the store ping it now.
func (d *Datastore) fail(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("mongodb shard store %s: %s: %w", d.where, op, err)
	unreachable := mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, mongo.ErrClientDisconnected) || errors.As(err, &topology.ServerSelectionError{})
	if unreachable && ctx.Err() == nil {
		select {
		case d.nudge <- struct{}{}:
		default:
		}
	}
	return err
}

// refuse fails op at once while the database is unreachable, rather than
// after the driver's server selection timeout.
func (d *Datastore) refuse(op string) error {
	if err := d.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

type doc struct {
	ID    string `bson:"_id"`
	Value []byte `bson:"v,omitempty"`
	Size  int64  `bson:"s"`
	// Parts and Gen name the parts of a value past partSize: Parts
	// documents in the parts collection, after Value, which is empty.
	Parts int    `bson:"n,omitempty"`
	Gen   string `bson:"g,omitempty"`
}

type part struct {
	ID    string `bson:"_id"`
	Value []byte `bson:"v"`
}

func partID(key, gen string, i int) string { return fmt.Sprintf("%s#%s#%d", key, gen, i) }

// byID is the filter of the document named id.
func byID(id string) bson.D { return bson.D{{Key: "_id", Value: id}} }

// Put stores value under key, durably (journaled).
func (d *Datastore) Put(ctx context.Context, key ds.Key, value []byte) error {
	k := key.String()
	if err := d.refuse("put " + k); err != nil {
		return err
	}
	nd := doc{ID: k, Value: value, Size: int64(len(value))}
	if len(value) > partSize {
		nd.Value, nd.Gen = nil, fmt.Sprintf("%x", d.gen.Add(1))
		for i := 0; i*partSize < len(value); i++ {
			p := part{ID: partID(k, nd.Gen, i), Value: value[i*partSize : min((i+1)*partSize, len(value))]}
			if _, err := d.parts.InsertOne(ctx, p); err != nil {
				d.dropParts(context.WithoutCancel(ctx), nd)
				return d.fail(ctx, "put "+k, err)
			}
			nd.Parts++
		}
	}
	// A node rarely writes a name twice (each shard version has its own):
	// insert, and only when the key is there, replace it, for the parts of
	// the value replaced must go. That document comes back whole: FerretDB
	// takes no projection here.
	_, err := d.coll.InsertOne(ctx, nd)
	if !mongo.IsDuplicateKeyError(err) {
		if err != nil {
			d.dropParts(context.WithoutCancel(ctx), nd)
			return d.fail(ctx, "put "+k, err)
		}
		return nil
	}
	var old doc
	err = d.coll.FindOneAndReplace(ctx, byID(k), nd, options.FindOneAndReplace().SetUpsert(true)).Decode(&old)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		d.dropParts(context.WithoutCancel(ctx), nd)
		return d.fail(ctx, "put "+k, err)
	case old.Parts > 0 && old.Gen != nd.Gen:
		d.dropParts(ctx, old)
	}
	return nil
}

// dropParts deletes the parts of a replaced or deleted value, or of one
// whose put failed. A failure leaves dead space that no document names:
// logged, not returned.
func (d *Datastore) dropParts(ctx context.Context, old doc) {
	if old.Parts == 0 {
		return
	}
	ids := make([]string, old.Parts)
	for i := range ids {
		ids[i] = partID(old.ID, old.Gen, i)
	}
	if _, err := d.parts.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		log.Warnw("delete the parts of a replaced value: they stay, unused", "key", old.ID, "err", d.fail(ctx, "delete parts", err))
	}
}

// Get returns the value under key, or ds.ErrNotFound.
func (d *Datastore) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	if err := d.refuse("get " + key.String()); err != nil {
		return nil, err
	}
	var dc doc
	if err := d.coll.FindOne(ctx, byID(key.String())).Decode(&dc); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, ds.ErrNotFound
		}
		return nil, d.fail(ctx, "get "+key.String(), err)
	}
	val, err := d.value(ctx, dc)
	if errors.Is(err, errReplaced) {
		return d.Get(ctx, key) // replaced or deleted while read
	}
	return val, err
}

// errReplaced: a part is gone because its value was replaced or deleted
// after its document was read.
var errReplaced = errors.New("the value was replaced while read")

// value is dc's value, read from its parts when it has them.
func (d *Datastore) value(ctx context.Context, dc doc) ([]byte, error) {
	if dc.Parts == 0 {
		if dc.Value == nil {
			dc.Value = []byte{}
		}
		return dc.Value, nil
	}
	val := make([]byte, 0, dc.Size)
	for i := 0; i < dc.Parts; i++ {
		var p part
		if err := d.parts.FindOne(ctx, byID(partID(dc.ID, dc.Gen, i))).Decode(&p); err != nil {
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil, d.partGone(ctx, dc, i)
			}
			return nil, d.fail(ctx, "get "+dc.ID, err)
		}
		val = append(val, p.Value...)
	}
	if int64(len(val)) != dc.Size {
		return nil, fmt.Errorf("mongodb shard store %s: get %s: parts hold %d bytes, the document says %d", d.where, dc.ID, len(val), dc.Size)
	}
	return val, nil
}

// partGone says why part i of dc is missing: errReplaced when dc's
// document no longer names that generation, else the value is lost
// (ds.ErrNotFound, as for a missing shard).
func (d *Datastore) partGone(ctx context.Context, dc doc, i int) error {
	var now doc
	err := d.coll.FindOne(ctx, byID(dc.ID), options.FindOne().SetProjection(bson.D{{Key: "g", Value: 1}})).Decode(&now)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments) || err == nil && now.Gen != dc.Gen:
		return errReplaced
	case err != nil:
		return d.fail(ctx, "get "+dc.ID, err)
	}
	return fmt.Errorf("mongodb shard store %s: get %s: part %d of %d is missing: %w", d.where, dc.ID, i, dc.Parts, ds.ErrNotFound)
}

// Has reports whether key has a value.
func (d *Datastore) Has(ctx context.Context, key ds.Key) (bool, error) {
	_, err := d.GetSize(ctx, key)
	if errors.Is(err, ds.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// GetSize returns the size of key's value, or ds.ErrNotFound.
func (d *Datastore) GetSize(ctx context.Context, key ds.Key) (int, error) {
	if err := d.refuse("get size of " + key.String()); err != nil {
		return -1, err
	}
	var dc doc
	err := d.coll.FindOne(ctx, byID(key.String()),
		options.FindOne().SetProjection(bson.D{{Key: "s", Value: 1}})).Decode(&dc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return -1, ds.ErrNotFound
	}
	if err != nil {
		return -1, d.fail(ctx, "get size of "+key.String(), err)
	}
	return int(dc.Size), nil
}

// Delete removes key's value; a missing key is not an error.
func (d *Datastore) Delete(ctx context.Context, key ds.Key) error {
	if err := d.refuse("delete " + key.String()); err != nil {
		return err
	}
	var old doc // whole, as in Put
	err := d.coll.FindOneAndDelete(ctx, byID(key.String())).Decode(&old)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return d.fail(ctx, "delete "+key.String(), err)
	case old.Parts > 0:
		d.dropParts(ctx, old)
	}
	return nil
}

// Query lists the keys under q.Prefix; filters, orders, offset and limit
// are applied as go-datastore's naive query does.
func (d *Datastore) Query(ctx context.Context, q query.Query) (query.Results, error) {
	if err := d.refuse("query"); err != nil {
		return nil, err
	}
	filter := bson.D{}
	if p := ds.NewKey(q.Prefix).String(); p != "/" {
		// Keys under /p are /p/...: from "/p/" up to "/p0" ('/' + 1).
		filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: p + "/"}, {Key: "$lt", Value: p + "0"}}}}
	}
	fo := options.Find()
	if q.KeysOnly {
		fo.SetProjection(bson.D{{Key: "s", Value: 1}})
	}
	cur, err := d.coll.Find(ctx, filter, fo)
	if err != nil {
		return nil, d.fail(ctx, "query", err)
	}
	done := false
	next := func() (query.Result, bool) {
		if done {
			return query.Result{}, false
		}
		if !cur.Next(ctx) {
			done = true
			if err := cur.Err(); err != nil {
				return query.Result{Error: d.fail(ctx, "query", err)}, true
			}
			return query.Result{}, false
		}
		var dc doc
		if err := cur.Decode(&dc); err != nil {
			return query.Result{Error: fmt.Errorf("mongodb shard store %s: query: %w", d.where, err)}, true
		}
		e := query.Entry{Key: dc.ID, Size: int(dc.Size)}
		if !q.KeysOnly {
			if e.Value, err = d.value(ctx, dc); err != nil {
				return query.Result{Error: err}, true
			}
		}
		return query.Result{Entry: e}, true
	}
	res := query.ResultsFromIterator(q, query.Iterator{
		Next:  next,
		Close: func() error { return cur.Close(context.Background()) },
	})
	return query.NaiveQueryApply(q, res), nil
}

// Sync does nothing: every write is journaled before it returns.
func (d *Datastore) Sync(context.Context, ds.Key) error { return nil }

// Batch returns a batch that applies its writes one by one at Commit.
func (d *Datastore) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(d), nil }

// Close stops the check and disconnects.
func (d *Datastore) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		<-d.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(d.client.Disconnect(ctx), d.health.Disconnect(ctx))
	})
	return err
}
