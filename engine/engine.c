/* engine/engine.c — opening, formatting and closing a store; a look at a store's
 * catalog without opening it; the engine's counters. Volumes: volume.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/volspec.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

_Static_assert(ENGINE_VOLUME_NAME_MAX == VOLSPEC_NAME_MAX &&
		       ENGINE_SNAP_SPEC_MAX == VOLSPEC_MAX,
	       "volume specs are parsed by common/volspec.h");

/* The coarse clock (the kernel's last tick: 1-4 ms old): every use here is a period or
 * a deadline of milliseconds (checkpoints, syncs, the cleaner's scans, pre-zeroing,
 * idle defrag), and a loop turn reads it several times. Under kvm-clock the precise
 * clock's vDSO read costs ~60-110 ns here, the coarse one ~25: the precise reads were
 * 6% of an EC owner's loop thread at QD32 writes (perf, scripts/ec_breakdown.sh). */
uint64_t eng_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t eng_now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void eng_test_pause(const struct engine *eng, const char *point)
{
	const char *p = eng->opts.test_pause;
	size_t n = strlen(point);
	unsigned long ms;
	struct timespec ts;

	if (!p || strncmp(p, point, n) != 0 || p[n] != ':')
		return;
	ms = strtoul(p + n + 1, NULL, 10);
	log_msg(LOG_INFO, ENG_LOG, "test pause at %s for %lu ms", point, ms);
	ts = (struct timespec){ .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void engine_opts_init(struct engine_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->gc_auto = true;
	opts->prezero = true;
	opts->idle_defrag = true;
	opts->poll_us = ENGINE_POLL_US_DEFAULT;
	opts->sync_bytes = ENGINE_SYNC_BYTES_DEFAULT;
}

uint64_t eng_id_base(const struct engine *eng)
{
	uint64_t base;

	/* the uuid is random (superblock.c): 62 bits of it, past the catalog's ids */
	memcpy(&base, eng->sb.uuid, sizeof(base));
	base &= (1ull << 62) - 1;
	return base < 2 ? 2 : base;
}

/* The RocksDB directory must belong to this store; a fresh one is claimed. */
static int check_store_record(struct engine *eng, bool formatted)
{
	struct ondisk_store_record rec;
	uint8_t uuid_meta[16];
	void *val;
	size_t len;
	int r = meta_get(eng->meta, ONDISK_KEY_STORE, 1, &val, &len);
	char uuid[37], other[37];

	eng_uuid_str(eng->sb.uuid, uuid);
	if (r == -ENOENT) {
		if (!formatted) {
			log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s is empty: it holds no "
				"record of store %s (uuid %s), whose superblock is valid. Give the "
				"store's own --meta, or restore it", eng->opts.meta_path,
				eng->opts.store_path, uuid);
			return -EINVAL;
		}
		eng->next_volume_id = eng_id_base(eng);
		ondisk_store_record_encode(eng->sb.uuid, eng->next_volume_id, &rec);
		return meta_put(eng->meta, ONDISK_KEY_STORE, 1, &rec, sizeof(rec), META_SYNC);
	}
	if (r < 0)
		return r;
	r = ondisk_store_record_decode(val, len, uuid_meta, &eng->next_volume_id);
	free(val);
	if (r < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s: its store record is damaged",
			eng->opts.meta_path);
		return r;
	}
	if (memcmp(uuid_meta, eng->sb.uuid, sizeof(uuid_meta)) != 0) {
		eng_uuid_str(uuid_meta, other);
		log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s belongs to store %s, not to %s "
			"(uuid %s): give the store's own --meta", eng->opts.meta_path, other,
			eng->opts.store_path, uuid);
		return -EINVAL;
	}
	return 0;
}

static int load_volumes(struct engine *eng)
{
	struct meta_iter *it;
	int r = meta_iter_create(eng->meta, "V", 1, &it);

	if (r < 0)
		return r;
	for (; meta_iter_valid(it) && r == 0; meta_iter_next(it)) {
		struct volume_record rec;
		size_t vlen;
		const void *val = meta_iter_value(it, &vlen);

		r = ondisk_volume_record_decode(val, vlen, &rec);
		if (r < 0) {
			log_msg(LOG_ERROR, ENG_LOG, "metadata: a volume record is damaged");
			break;
		}
		r = eng_volume_add(eng, &rec, NULL);
	}
	if (r == 0)
		r = meta_iter_status(it);
	meta_iter_destroy(it);
	return r;
}

/* Rewrites a stored chunk without its entries at or past nblocks (a shrink that had
 * no checkpoint yet): left there, a later grow would bring them back. */
static int keep_in_range(struct meta_batch *mb, const uint8_t *key, size_t klen,
			 const void *val, size_t len, uint64_t chunk, uint64_t nblocks)
{
	struct ondisk_map_entry *keep = malloc(len ? len : 1);
	size_t n = 0;

	if (!keep)
		return -ENOMEM;
	for (size_t i = 0; i < len / sizeof(*keep); i++) {
		struct ondisk_map_entry e;

		memcpy(&e, (const uint8_t *)val + i * sizeof(e), sizeof(e));
		if (chunk * MAP_CHUNK_BLOCKS + e.index < nblocks)
			keep[n++] = e;
	}
	if (n)
		meta_batch_put(mb, key, klen, keep, n * sizeof(*keep));
	else
		meta_batch_delete(mb, key, klen);
	free(keep);
	return 0;
}

/* Loads the checkpointed map; chunks of deleted volumes are dropped. */
static int load_map(struct engine *eng, uint64_t *ckpt_seq)
{
	struct meta_iter *it;
	struct meta_batch *stale;
	void *val;
	size_t len;
	int r = meta_get(eng->meta, ONDISK_KEY_CKPT, 1, &val, &len);

	*ckpt_seq = 0;
	if (r == 0) {
		r = ondisk_checkpoint_decode(val, len, ckpt_seq);
		free(val);
	}
	if (r < 0 && r != -ENOENT)
		return r;
	r = meta_batch_create(&stale);
	if (r < 0)
		return r;
	r = meta_iter_create(eng->meta, "M", 1, &it);
	if (r < 0)
		goto out_batch;
	for (; meta_iter_valid(it) && r == 0; meta_iter_next(it)) {
		size_t klen;
		const uint8_t *key = meta_iter_key(it, &klen);
		const void *v = meta_iter_value(it, &len);
		struct engine_volume *vol;
		uint64_t volume_id, chunk;

		r = ondisk_map_key_decode(key, klen, &volume_id, &chunk);
		if (r < 0)
			break;
		vol = eng_volume_by_id(eng, volume_id);
		if (!vol) {
			meta_batch_delete(stale, key, klen);
			continue;
		}
		r = map_load_chunk(vol->map, chunk, v, len);
		if (r == -ERANGE) {
			/* left by a shrink that crashed before its checkpoint: the volume
			 * record's size is the authority */
			log_msg(LOG_WARN, ENG_LOG, "volume %s: dropping stored map entries past "
				"its end", vol->rec.name);
			r = keep_in_range(stale, key, klen, v, len, chunk, map_nblocks(vol->map));
		}
	}
	if (r == 0)
		r = meta_iter_status(it);
	else
		log_msg(LOG_ERROR, ENG_LOG, "metadata: extent map damaged (%s)", err_str(-r));
	meta_iter_destroy(it);
	for (size_t i = 0; i < eng->nvols; i++)
		map_clear_dirty(eng->vols[i]->map);
	if (r == 0 && meta_batch_count(stale))
		r = meta_batch_commit(eng->meta, stale, META_NOWAL);
out_batch:
	meta_batch_destroy(stale);
	return r;
}

/* The engine's own memory, once volumes, store and metadata are closed. */
static void free_engine(struct engine *eng)
{
	seg_buf_free(eng->gc_buf);
	seg_buf_free(eng->read_scratch);
	free(eng->gc_moves);
	free(eng->gc_fetches);
	free(eng->gc_want);
	seg_buf_free(eng->pz_zeros);
	free(eng->pz_ranges);
	eng_defrag_idle_free(eng);
	eng_fckpt_destroy(eng);
	free(eng->deferred_free);
	free(eng->seg_table);
	free(eng->families);
	free(eng->family_index);
	eng_held_free(eng);
	free(eng->vols);
	free(eng->aliases);
	free(eng->stale_slots);
	free(eng->dead);
	free(eng->gc_tombs);
	free(eng->gc_trims);
	free(eng->ops);
	free(eng->slots);
	free(eng);
}

int engine_open(const struct engine_opts *opts, struct engine **out)
{
	struct engine *eng;
	uint64_t ckpt_seq;
	bool formatted;
	int r;

	if (!opts->store_path || !opts->meta_path)
		return -EINVAL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return -ENOMEM;
	eng->opts = *opts;
	eng->next_seq = 1;
	eng->next_gen = 1;
	r = seg_local_open(opts->store_path, opts->store_size, opts->queue_depth, &eng->segs);
	if (r < 0)
		goto err_free;
	r = eng_sb_load(eng, &formatted);
	if (r == 0 && formatted)
		r = eng_sb_format(eng);
	if (r == 0 && !opts->rebuild_meta) /* a rebuild fills an empty directory */
		r = check_store_record(eng, formatted);
	if (r == 0 && !formatted)
		r = eng_sb_repair(eng);
	if (r < 0)
		goto err_close_meta;
	eng->blocks_per_seg = eng->sb.segment_size / QUILL_BLOCK_SIZE;
	seg_local_layout(eng->segs, eng->sb.data_offset, eng->sb.segment_size,
			 eng->sb.segment_count);
	eng->gc_reserve = opts->gc_reserve_segments ? opts->gc_reserve_segments
						    : ENG_GC_RESERVE_DEFAULT;
	eng->slots = seg_slots_alloc(eng);
	eng->gc_buf = seg_buf_alloc(eng->sb.segment_size);
	if (!eng->slots || !eng->gc_buf) {
		r = -ENOMEM;
		goto err_close_meta;
	}
	ckpt_seq = 0;
	r = eng_catalog_layer_add(eng);
	if (r < 0)
		goto err_close_meta;
	if (opts->rebuild_meta) {
		r = eng_rebuild(eng, true);
	} else {
		r = load_volumes(eng);
		if (r == 0)
			r = eng_link_layers(eng);
		if (r == 0)
			r = eng_load_aliases(eng);
		if (r == 0)
			r = load_map(eng, &ckpt_seq);
		if (r == 0) /* held slots are marked before replay takes the rest */
			r = eng_held_load(eng);
		if (r == 0)
			r = eng_replay(eng, ckpt_seq);
	}
	if (r == 0)
		r = eng_ckpt_start_thread(eng);
	if (r < 0)
		goto err_close_meta;
	r = eng_mc_start_thread(eng);
	if (r < 0) {
		engine_close(eng);
		return r;
	}
	r = eng_catalog_reconcile(eng);
	if (r < 0) {
		engine_close(eng);
		return r;
	}
	/* the slots' MAPS counts are not stored: until every family's checkpoint is
	 * written again (at the next one, or its next write), so that its newest is
	 * counted, none of its slots goes for being empty (fckpt.c) */
	eng_fckpt_pin_unknown(eng);
	r = eng_ckpt_sync(eng); /* the replayed state becomes the checkpoint */
	if (r < 0) {
		engine_close(eng);
		return r;
	}
	eng_fckpt_want_all(eng);
	eng->ckpt_last_ms = eng_now_ms();
	eng->fckpt_last_ms = eng->ckpt_last_ms;
	eng_flatten_resume(eng);
	eng_prezero_init(eng);
	eng_defrag_idle_init(eng);
	log_msg(LOG_INFO, ENG_LOG, "opened %s: %zu layers, %u/%u segments free, replayed %llu "
		"batches after checkpoint %llu, dropped %llu torn, kept %llu corrupt",
		opts->store_path, eng->nvols - 1, eng->nfree, eng->sb.segment_count,
		(unsigned long long)eng->stats.replayed_batches, (unsigned long long)ckpt_seq,
		(unsigned long long)eng->stats.torn_batches,
		(unsigned long long)eng->stats.corrupt_batches);
	*out = eng;
	return 0;

err_close_meta:
	while (eng->nvols)
		eng_volume_remove(eng, eng->vols[0]);
	meta_close(eng->meta);
	seg_close(eng->segs);
err_free:
	free_engine(eng);
	log_msg(LOG_ERROR, ENG_LOG, "cannot open store %s: %s", opts->store_path, err_str(-r));
	return r;
}

static void layer_info(struct engine *eng, struct engine_volume *l,
		       struct engine_layer_info *out)
{
	memset(out, 0, sizeof(*out));
	out->id = l->rec.volume_id;
	out->uid = l->rec.uid;
	out->snapshot = l->rec.kind == ONDISK_LAYER_SNAPSHOT;
	snprintf(out->name, sizeof(out->name), "%s", l->rec.name);
	snprintf(out->volume, sizeof(out->volume), "%s", out->snapshot ? "?" : l->rec.name);
	for (size_t i = 0; i < eng->nvols && out->snapshot; i++)
		if (eng->vols[i]->rec.kind == ONDISK_LAYER_VOLUME &&
		    eng->vols[i]->rec.uid == l->rec.uid)
			snprintf(out->volume, sizeof(out->volume), "%s", eng->vols[i]->rec.name);
	out->size = l->rec.size;
	out->parent_id = l->rec.parent_id;
	out->overlap = l->rec.overlap;
	out->flattening = l->rec.flags & ONDISK_LAYER_FLATTENING;
	out->sector_size = eng_sector_size(&l->rec);
	out->own_blocks = map_mapped_blocks(l->map);
	for (size_t i = 0; i < eng->naliases; i++)
		out->merged += eng->aliases[i].to == l->rec.volume_id;
}

static int cmp_layer_id(const void *a, const void *b)
{
	const struct engine_volume *const *x = a, *const *y = b;
	return (*x)->rec.volume_id < (*y)->rec.volume_id ? -1
	       : (*x)->rec.volume_id > (*y)->rec.volume_id;
}

int engine_catalog_scan(const char *store_path,
			int (*fn)(const struct engine_layer_info *info, void *arg), void *arg)
{
	struct engine *eng = calloc(1, sizeof(*eng));
	int r;

	if (!eng)
		return -ENOMEM;
	eng->opts.store_path = store_path;
	r = seg_local_open(store_path, 0, 0, &eng->segs);
	if (r < 0)
		goto out_free;
	r = eng_sb_read(eng);
	if (r < 0)
		goto out_close;
	eng->blocks_per_seg = eng->sb.segment_size / QUILL_BLOCK_SIZE;
	seg_local_layout(eng->segs, eng->sb.data_offset, eng->sb.segment_size,
			 eng->sb.segment_count);
	eng->slots = seg_slots_alloc(eng);
	eng->gc_buf = seg_buf_alloc(eng->sb.segment_size);
	r = eng->slots && eng->gc_buf ? eng_catalog_layer_add(eng) : -ENOMEM;
	if (r == 0)
		r = eng_rebuild(eng, false);
	if (r == 0 && eng->nvols)
		qsort(eng->vols, eng->nvols, sizeof(*eng->vols), cmp_layer_id);
	for (size_t i = 0; i < eng->nvols && r == 0; i++) {
		struct engine_layer_info info;

		if (eng->vols[i]->rec.kind == ONDISK_LAYER_CATALOG)
			continue;
		layer_info(eng, eng->vols[i], &info);
		r = fn(&info, arg);
	}
	while (eng->nvols)
		eng_volume_remove(eng, eng->vols[0]);
out_close:
	seg_close(eng->segs);
out_free:
	free_engine(eng);
	return r;
}

void engine_close(struct engine *eng)
{
	if (!eng)
		return;
	for (size_t i = 0; i < eng->nvols; i++) {
		eng->vols[i]->open = false;
		eng->vols[i]->readers = 0;
	}
	eng->closing = true; /* the cleaner starts nothing new */
	eng_run_parked(eng, true);
	eng_drain(eng);
	eng_ckpt_sync(eng); /* flushes the store, then writes the map */
	eng_drain(eng);
	eng_ckpt_stop_thread(eng);
	eng_mc_stop_thread(eng);
	while (eng->nvols)
		eng_volume_remove(eng, eng->vols[0]);
	meta_close(eng->meta);
	seg_close(eng->segs);
	eng_base_free(eng);
	while (eng->free_reqs) {
		struct ioreq *r = eng->free_reqs;
		eng->free_reqs = r->next;
		free(r);
	}
	while (eng->free_batches) {
		struct batch *b = eng->free_batches;
		eng->free_batches = b->next;
		seg_buf_free(b->buf);
		free(b);
	}
	free_engine(eng);
}

void engine_client_load_watch(struct engine *eng)
{
	eng->client_load_on = true;
}

uint64_t engine_client_io_start(const struct engine *eng)
{
	return eng->client_load_on ? log_clock_us() : 0; /* the vDSO: no system call */
}

void engine_client_io_done(struct engine *eng, uint64_t start_us)
{
	if (!start_us)
		return; /* not watched when it arrived */
	eng->client_load.ops++;
	eng->client_load.busy_us += log_clock_us() - start_us;
}

void engine_get_client_load(const struct engine *eng, struct engine_client_load *out)
{
	*out = eng->client_load;
}

void engine_get_stats(const struct engine *eng, struct engine_stats *out)
{
	struct eng_space sp;

	*out = eng->stats;
	out->meta_error = meta_health(eng->meta);
	out->segment_size = eng->sb.segment_size;
	out->segments_total = eng->sb.segment_count;
	out->segments_free = eng->nfree;
	out->segments_open = 0;
	out->used_blocks = 0;
	eng_space_census(eng, &sp);
	out->segments_too_live = sp.too_live;
	out->segments_trims_only = sp.pinned;
	out->segments_empty = sp.waiting;
	out->segments_held = sp.held;
	out->trim_entries = sp.tombs;
	/* held slots are other nodes' data: neither this store's room nor its use */
	out->usable_blocks = (uint64_t)(eng->sb.segment_count - sp.held) *
			     (eng->blocks_per_seg - 1) * ENG_GC_MAX_LIVE_PCT / 100;
	out->raw_usable_blocks = (uint64_t)eng->sb.segment_count * (eng->blocks_per_seg - 1) *
				 ENG_GC_MAX_LIVE_PCT / 100;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		if (eng->slots[i].held)
			continue;
		if (eng->slots[i].state == SLOT_OPEN)
			out->segments_open++;
		if (eng->slots[i].state != SLOT_FREE)
			out->used_blocks += eng->slots[i].used;
	}
	eng_remote_space(eng, &out->remote_blocks, &out->remote_live_blocks);
}
