package sim

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"
)

// residency models which models are loaded and where their memory goes, on
// the servers that load models on demand: Ollama (server/sched.go) and
// llama.cpp in router mode (tools/server/server-models.cpp). Other flavors
// serve every model at all times.
//
// Ollama, as its scheduler does it:
//   - a request for a model that is not loaded waits while it loads; loads
//     happen one at a time (processPending handles one pending request
//     before the next);
//   - a model loads if fewer than MaxLoaded are resident
//     (OLLAMA_MAX_LOADED_MODELS, default 3 per GPU) and it fits in the
//     free memory; the first model always loads, offloading what does not
//     fit (size_vram < size);
//   - otherwise it evicts: runners sorted by keep-alive duration, shortest
//     first, then by name (ByDurationAndName); the first idle one is
//     unloaded, or, when all are busy, the first one once its requests
//     finish (findRunnerToUnload); then it tries again;
//   - an idle model stays for its keep-alive (the request's keep_alive,
//     else the one it was loaded with, else OLLAMA_KEEP_ALIVE) and is
//     unloaded when it expires; keep_alive 0 unloads it once idle;
//   - unloading removes it from /api/ps at once but its memory is only
//     free after UnloadTime (waitForVRAMRecovery).
//   - runners are keyed by the model's blob (schedulerModelKey:
//     ModelPath): names that share one (Model.CopyOf) share one runner,
//     which keeps the name that loaded it (runnerRef.model).
//
// llama.cpp router: a request for an unloaded model autoloads it; over
// MaxLoaded (--models-max, default 4) the least recently used model is
// unloaded first (unload_lru). Memory is not modelled there (llama.cpp
// fits each model with --fit on its own).
type residency struct {
	s         *Server
	onDemand  bool
	lru       bool // llama.cpp router policy
	budget    int64
	maxLoaded int
	keepAlive time.Duration

	loadSem chan struct{} // one load at a time

	mu      sync.Mutex
	runners map[*modelEntry]*runner
	used    int64 // memory taken, including memory still being freed
	peak    int64 // the most used at once
	// recovering: unloaded runners whose memory is not free yet.
	recovering map[*runner]bool
	changed    chan struct{} // closed and replaced on every change
}

type runner struct {
	e         *modelEntry
	refs      int
	session   time.Duration // keep-alive; negative: forever
	expiresAt time.Time
	timer     *time.Timer
	lastUsed  time.Time
	loading   bool
	vram      int64         // bytes in VRAM
	total     int64         // bytes in memory (VRAM and system)
	gone      chan struct{} // closed once unloaded and its memory free
	goneOnce  sync.Once
}

func (ru *runner) markGone() { ru.goneOnce.Do(func() { close(ru.gone) }) }

func newRunner(e *modelEntry, session time.Duration) *runner {
	return &runner{e: e, session: session, total: e.SizeVRAM, vram: e.SizeVRAM, lastUsed: time.Now(), gone: make(chan struct{})}
}

func newResidency(s *Server) *residency {
	c := &s.cfg
	r := &residency{s: s, budget: c.VRAMTotal, keepAlive: c.KeepAlive, maxLoaded: c.MaxLoaded,
		loadSem: make(chan struct{}, 1), runners: map[*modelEntry]*runner{}, recovering: map[*runner]bool{},
		changed: make(chan struct{})}
	switch {
	case c.Flavor == FlavorOllama:
		r.onDemand = true
		if r.maxLoaded == 0 {
			r.maxLoaded = 3 // defaultModelsPerGPU * 1 GPU
		}
	case c.Flavor == FlavorLlamaCPP && s.router:
		r.onDemand, r.lru, r.budget = true, true, 0
		if r.maxLoaded == 0 {
			r.maxLoaded = 4 // --models-max default
		}
	}
	return r
}

// notify wakes every waiter; call with mu held.
func (r *residency) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait blocks until the next change or ctx ends; call with mu held, returns
// with it held.
func (r *residency) wait(ctx context.Context) error {
	ch := r.changed
	r.mu.Unlock()
	defer r.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire makes e resident (loading it, evicting others, waiting as the
// real server does) and takes a reference for one request. keepAlive is the
// request's keep_alive (nil: keep the runner's own). It returns the time
// spent loading.
func (r *residency) acquire(ctx context.Context, e *modelEntry, keepAlive *time.Duration) (release func(), loadTime time.Duration, err error) {
	if !r.onDemand {
		return func() {}, 0, nil
	}
	if rel, ok := r.use(e, keepAlive); ok {
		return rel, 0, nil
	}
	start := time.Now()
	select {
	case r.loadSem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-r.loadSem }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if ru := r.runners[e.key()]; ru != nil {
			if ru.loading { // loading for /models/load
				if err := r.wait(ctx); err != nil {
					return nil, 0, err
				}
				continue
			}
			r.take(ru, keepAlive)
			return r.releaser(ru), time.Since(start), nil
		}
		victim, load := r.decide(e)
		if load {
			ru := r.startLoad(e, keepAlive)
			if err := r.finishLoad(ctx, ru); err != nil {
				return nil, 0, err
			}
			r.take(ru, keepAlive)
			return r.releaser(ru), time.Since(start), nil
		}
		if victim == nil {
			if err := r.wait(ctx); err != nil {
				return nil, 0, err
			}
			continue
		}
		// Expire it now, or once its requests finish, and wait until its
		// memory is free (processPending waits on unloadedCh).
		r.expireLocked(victim)
		r.mu.Unlock()
		select {
		case <-victim.gone:
			r.mu.Lock()
		case <-ctx.Done():
			r.mu.Lock()
			return nil, 0, ctx.Err()
		}
	}
}

// use takes a reference on an already loaded runner.
func (r *residency) use(e *modelEntry, keepAlive *time.Duration) (func(), bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ru := r.runners[e.key()]
	if ru == nil || ru.loading {
		return nil, false
	}
	r.take(ru, keepAlive)
	return r.releaser(ru), true
}

// take: useLoadedRunner — stop the expiry timer, adopt the request's
// keep_alive when it sent one.
func (r *residency) take(ru *runner, keepAlive *time.Duration) {
	ru.refs++
	ru.lastUsed = time.Now()
	if ru.timer != nil {
		ru.timer.Stop()
		ru.timer = nil
	}
	if keepAlive != nil {
		ru.session = *keepAlive
	}
}

// decide returns whether e can load now, or the runner to evict first (nil
// when there is nothing to do but wait).
func (r *residency) decide(e *modelEntry) (victim *runner, load bool) {
	n := len(r.runners)
	if r.maxLoaded > 0 && n >= r.maxLoaded {
		return r.victim(), false
	}
	if r.budget == 0 || r.used+e.SizeVRAM <= r.budget {
		return nil, true
	}
	if n == 0 {
		// Nothing else loaded: load anyway, offloading what does not fit
		// (requireFull false), once unloaded memory has recovered.
		return nil, r.used == 0
	}
	return r.victim(), false
}

// victim: Ollama findRunnerToUnload (ByDurationAndName, first idle, else
// the first); llama.cpp unload_lru (least recently used).
func (r *residency) victim() *runner {
	list := make([]*runner, 0, len(r.runners))
	for _, ru := range r.runners {
		if !ru.loading {
			list = append(list, ru)
		}
	}
	if len(list) == 0 {
		return nil
	}
	if r.lru {
		sort.Slice(list, func(i, j int) bool { return list[i].lastUsed.Before(list[j].lastUsed) })
		return list[0]
	}
	sort.Slice(list, func(i, j int) bool {
		// uint64 of the duration, as Ollama compares it: forever sorts last.
		di, dj := uint64(list[i].session), uint64(list[j].session)
		if di != dj {
			return di < dj
		}
		return list[i].e.Name < list[j].e.Name
	})
	for _, ru := range list {
		if ru.refs == 0 {
			return ru
		}
	}
	return list[0]
}

// startLoad registers e as loading; call with mu held.
func (r *residency) startLoad(e *modelEntry, keepAlive *time.Duration) *runner {
	ru := newRunner(e, r.keepAlive)
	ru.loading = true
	if keepAlive != nil {
		ru.session = *keepAlive
	}
	r.place(ru)
	r.notify()
	return ru
}

// place registers ru and takes its memory; what does not fit the budget
// stays in system memory (the first model loads partly offloaded).
func (r *residency) place(ru *runner) {
	if r.budget > 0 && r.used+ru.vram > r.budget {
		ru.vram = max(r.budget-r.used, 0)
	}
	r.runners[ru.e.key()] = ru
	r.used += ru.vram
	r.peak = max(r.peak, r.used)
}

// finishLoad waits LoadTime (mu released meanwhile); a cancelled load is
// undone.
func (r *residency) finishLoad(ctx context.Context, ru *runner) error {
	d := r.s.beh.Load().LoadTime
	if d > 0 {
		r.mu.Unlock()
		var t *time.Timer
		ok := pause(ctx, &t, d)
		r.mu.Lock()
		if !ok {
			delete(r.runners, ru.e.key())
			r.used -= ru.vram
			ru.e.key().loaded.Store(false)
			ru.markGone()
			r.notify()
			return ctx.Err()
		}
	}
	ru.loading = false
	ru.lastUsed = time.Now()
	ru.e.key().loaded.Store(true)
	r.s.loads.Add(1)
	r.notify()
	return nil
}

func (r *residency) releaser(ru *runner) func() {
	var once sync.Once
	return func() { once.Do(func() { r.release(ru) }) }
}

// release: processCompleted — an idle runner with keep-alive 0 unloads, a
// positive one starts its expiry timer, a negative one stays forever.
func (r *residency) release(ru *runner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ru.refs--
	ru.lastUsed = time.Now()
	if ru.refs > 0 || r.runners[ru.e.key()] != ru {
		return
	}
	switch {
	case ru.session == 0:
		r.unloadLocked(ru)
	case ru.session > 0:
		r.arm(ru)
	default:
		ru.expiresAt = time.Now().Add(time.Duration(math.MaxInt64))
	}
	r.notify()
}

// arm starts the expiry timer of an idle runner; call with mu held.
func (r *residency) arm(ru *runner) {
	if r.lru {
		return // llama.cpp keeps models until evicted or unloaded
	}
	ru.expiresAt = time.Now().Add(ru.session)
	ru.timer = time.AfterFunc(ru.session, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.runners[ru.e.key()] == ru && ru.refs == 0 {
			r.unloadLocked(ru)
		}
	})
}

// unloadLocked removes ru at once; its memory frees after UnloadTime.
func (r *residency) unloadLocked(ru *runner) {
	if r.runners[ru.e.key()] != ru {
		return
	}
	delete(r.runners, ru.e.key())
	if ru.timer != nil {
		ru.timer.Stop()
		ru.timer = nil
	}
	ru.e.key().loaded.Store(false)
	r.s.unloads.Add(1)
	r.recovering[ru] = true
	free := func() {
		if r.recovering[ru] { // not forgotten by reset meanwhile
			delete(r.recovering, ru)
			r.used -= ru.vram
		}
		ru.markGone()
		r.notify()
	}
	if d := r.s.beh.Load().UnloadTime; d > 0 {
		time.AfterFunc(d, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			free()
		})
	} else {
		free()
	}
	r.notify()
}

// expire is Ollama's expireRunner (keep_alive 0 with no prompt): unload
// now if idle, else when its requests finish.
func (r *residency) expire(e *modelEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ru := r.runners[e.key()]
	if ru == nil {
		return
	}
	ru.expiresAt = time.Now()
	r.expireLocked(ru)
}

// expireLocked sets ru's keep-alive to 0: it unloads now when idle, else
// when its last request ends (release).
func (r *residency) expireLocked(ru *runner) {
	ru.session = 0
	if ru.timer != nil {
		ru.timer.Stop()
		ru.timer = nil
	}
	if ru.refs == 0 {
		r.unloadLocked(ru)
	}
}

// loadAsync starts loading e in the background (llama.cpp POST
// /models/load answers before the load ends).
func (r *residency) loadAsync(e *modelEntry) {
	go func() {
		rel, _, err := r.acquire(context.Background(), e, nil)
		if err == nil {
			rel()
		}
	}()
}

// set loads or unloads e at once, with no timing (Server.SetLoaded and
// models configured Loaded).
func (r *residency) set(e *modelEntry, loaded bool) {
	e.key().loaded.Store(loaded)
	if !r.onDemand {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ru := r.runners[e.key()]
	switch {
	case loaded && ru == nil:
		ru = newRunner(e, r.keepAlive)
		r.place(ru)
		if ru.session > 0 {
			r.arm(ru)
		} else if ru.session < 0 {
			ru.expiresAt = time.Now().Add(time.Duration(math.MaxInt64))
		}
	case !loaded && ru != nil:
		delete(r.runners, e.key())
		if ru.timer != nil {
			ru.timer.Stop()
		}
		r.used -= ru.vram
		ru.markGone()
	}
	r.notify()
}

// reset forgets every runner (the model table changed).
func (r *residency) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ru := range r.runners {
		if ru.timer != nil {
			ru.timer.Stop()
		}
		ru.markGone()
	}
	r.runners = map[*modelEntry]*runner{}
	r.recovering = map[*runner]bool{}
	r.used = 0
	r.notify()
}

// Resident is one loaded model as the server reports it.
type Resident struct {
	Name      string
	Size      int64 // bytes in memory
	SizeVRAM  int64 // bytes in VRAM (0 on a CPU-only host)
	ExpiresAt time.Time
	Loading   bool
	InUse     int // requests holding it
}

// snapshot lists the runners, longest remaining keep-alive first (as
// Ollama's PsHandler sorts).
func (r *residency) snapshot() []Resident {
	r.mu.Lock()
	out := make([]Resident, 0, len(r.runners))
	now := time.Now()
	for _, ru := range r.runners {
		exp := ru.expiresAt
		if exp.IsZero() { // never idle yet: now + the session, as PsHandler does
			exp = now.Add(ru.session)
		}
		vram := ru.vram
		if r.s.cfg.CPUOnly {
			vram = 0
		}
		out = append(out, Resident{Name: ru.e.Name, Size: ru.total, SizeVRAM: vram, ExpiresAt: exp, Loading: ru.loading, InUse: ru.refs})
	}
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := out[i].ExpiresAt.Unix(), out[j].ExpiresAt.Unix(); a != b {
			return a > b
		}
		return out[i].ExpiresAt.After(out[j].ExpiresAt)
	})
	return out
}

// vramUsed is the memory taken now (including memory still being freed)
// and the most taken at once.
func (r *residency) vramUsed() (used, peak int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used, r.peak
}
