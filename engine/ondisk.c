/* engine/ondisk.c — encoders and decoders of the formats in engine/ondisk.h. */
#include "engine/ondisk.h"

#include <errno.h>
#include <string.h>

#include "common/crc32c.h"

/* CRC32C of a record whose crc field (at crc_off, 4 bytes) counts as zero. */
static uint32_t record_crc(const void *buf, size_t len, size_t crc_off)
{
	static const uint8_t zero[4];
	uint32_t crc = crc32c(buf, crc_off);
	crc = crc32c_extend(crc, zero, sizeof(zero));
	return crc32c_extend(crc, (const uint8_t *)buf + crc_off + 4, len - crc_off - 4);
}

/* A fixed-size record copied from buf into d (size bytes, its crc field at crc_off):
 * -EINVAL unless len is its size, -EILSEQ if its CRC is wrong. */
static int record_load(const void *buf, size_t len, void *d, size_t size, size_t crc_off)
{
	uint32_t crc;

	if (len != size)
		return -EINVAL;
	memcpy(d, buf, size);
	memcpy(&crc, (const uint8_t *)d + crc_off, sizeof(crc));
	return crc == record_crc(buf, size, crc_off) ? 0 : -EILSEQ;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void ondisk_volume_key(uint64_t volume_id, uint8_t key[ONDISK_VOLUME_KEY_LEN])
{
	key[0] = 'V';
	put_be64(key + 1, volume_id);
}

void ondisk_map_key(uint64_t volume_id, uint64_t chunk, uint8_t key[ONDISK_MAP_KEY_LEN])
{
	key[0] = 'M';
	put_be64(key + 1, volume_id);
	put_be64(key + 9, chunk);
}

int ondisk_map_key_decode(const void *key, size_t len, uint64_t *volume_id, uint64_t *chunk)
{
	const uint8_t *k = key;

	if (len != ONDISK_MAP_KEY_LEN || k[0] != 'M')
		return -EPROTO;
	*volume_id = get_be64(k + 1);
	*chunk = get_be64(k + 9);
	return 0;
}

void ondisk_alias_key(uint64_t layer_id, uint8_t key[ONDISK_ALIAS_KEY_LEN])
{
	key[0] = 'A';
	put_be64(key + 1, layer_id);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Keys of a segment (family uid, segment number) under a one-letter prefix. */
static void segment_key(char p, uint64_t family_uid, uint32_t sno, uint8_t key[13])
{
	key[0] = (uint8_t)p;
	put_be64(key + 1, family_uid);
	put_be32(key + 9, sno);
}

static int segment_key_decode(char p, const void *key, size_t len, uint64_t *family_uid,
			      uint32_t *sno)
{
	const uint8_t *k = key;

	if (len != 13 || k[0] != (uint8_t)p)
		return -EPROTO;
	*family_uid = get_be64(k + 1);
	*sno = get_be32(k + 9);
	return 0;
}

/* Keys of a family under a one-letter prefix. */
static void uid_key(char p, uint64_t family_uid, uint8_t key[9])
{
	key[0] = (uint8_t)p;
	put_be64(key + 1, family_uid);
}

static int uid_key_decode(char p, const void *key, size_t len, uint64_t *family_uid)
{
	const uint8_t *k = key;

	if (len != 9 || k[0] != (uint8_t)p)
		return -EPROTO;
	*family_uid = get_be64(k + 1);
	return 0;
}

_Static_assert(ONDISK_SLOT_KEY_LEN == 13 && ONDISK_HELD_KEY_LEN == 13, "segment keys");
_Static_assert(ONDISK_FAMILY_KEY_LEN == 9 && ONDISK_EPOCH_KEY_LEN == 9, "family keys");

void ondisk_slot_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_SLOT_KEY_LEN])
{
	segment_key('T', family_uid, sno, key);
}

int ondisk_slot_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno)
{
	return segment_key_decode('T', key, len, family_uid, sno);
}

void ondisk_held_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_HELD_KEY_LEN])
{
	segment_key('H', family_uid, sno, key);
}

int ondisk_held_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno)
{
	return segment_key_decode('H', key, len, family_uid, sno);
}

void ondisk_epoch_key(uint64_t family_uid, uint8_t key[ONDISK_EPOCH_KEY_LEN])
{
	uid_key('E', family_uid, key);
}

int ondisk_epoch_key_decode(const void *key, size_t len, uint64_t *family_uid)
{
	return uid_key_decode('E', key, len, family_uid);
}

void ondisk_held_record_encode(const struct held_record *r, struct ondisk_held_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = ONDISK_HELD_RECORD_VERSION;
	out->slot = r->slot;
	out->epoch = r->epoch;
	out->sealed = r->sealed ? 1 : 0;
	out->length = r->sealed ? r->length : 0;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_held_record, crc));
}

int ondisk_held_record_decode(const void *buf, size_t len, struct held_record *r)
{
	struct ondisk_held_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_held_record, crc));

	if (err < 0)
		return err;
	if (d.version != ONDISK_HELD_RECORD_VERSION || d.sealed > 1)
		return -EPROTO;
	*r = (struct held_record){ .slot = d.slot, .epoch = d.epoch, .sealed = d.sealed,
				   .length = d.length };
	return 0;
}

void ondisk_epoch_record_encode(uint64_t epoch, struct ondisk_epoch_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = ONDISK_EPOCH_RECORD_VERSION;
	out->epoch = epoch;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_epoch_record, crc));
}

int ondisk_epoch_record_decode(const void *buf, size_t len, uint64_t *epoch)
{
	struct ondisk_epoch_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_epoch_record, crc));

	if (err < 0)
		return err;
	if (d.version != ONDISK_EPOCH_RECORD_VERSION)
		return -EPROTO;
	*epoch = d.epoch;
	return 0;
}

void ondisk_slot_record_encode(const struct slot_record *r, struct ondisk_slot_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = ONDISK_SLOT_RECORD_VERSION;
	out->used = r->used;
	out->volume_id = r->volume_id;
	out->generation = r->generation;
	out->last_seq = r->last_seq;
	out->tombs = r->tombs;
	out->slot = r->slot;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_slot_record, crc));
}

int ondisk_slot_record_decode(const void *buf, size_t len, struct slot_record *r)
{
	struct ondisk_slot_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_slot_record, crc));

	if (err < 0)
		return err;
	if (d.version != ONDISK_SLOT_RECORD_VERSION || d.used == 0)
		return -EPROTO;
	*r = (struct slot_record){ .volume_id = d.volume_id, .generation = d.generation,
				   .last_seq = d.last_seq,
				   .used = d.used, .tombs = d.tombs, .slot = d.slot };
	return 0;
}

void ondisk_family_key(uint64_t family_uid, uint8_t key[ONDISK_FAMILY_KEY_LEN])
{
	uid_key('F', family_uid, key);
}

int ondisk_family_key_decode(const void *key, size_t len, uint64_t *family_uid)
{
	return uid_key_decode('F', key, len, family_uid);
}

void ondisk_family_record_encode(uint32_t next_sno, struct ondisk_family_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = ONDISK_FAMILY_RECORD_VERSION;
	out->next_sno = next_sno;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_family_record, crc));
}

int ondisk_family_record_decode(const void *buf, size_t len, uint32_t *next_sno)
{
	struct ondisk_family_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_family_record, crc));

	if (err < 0)
		return err;
	if (d.version != ONDISK_FAMILY_RECORD_VERSION)
		return -EPROTO;
	*next_sno = d.next_sno;
	return 0;
}

int ondisk_alias_key_decode(const void *key, size_t len, uint64_t *layer_id)
{
	const uint8_t *k = key;

	if (len != ONDISK_ALIAS_KEY_LEN || k[0] != 'A')
		return -EPROTO;
	*layer_id = get_be64(k + 1);
	return 0;
}

void ondisk_superblock_encode(const struct superblock *sb, void *buf)
{
	struct ondisk_superblock d;

	memset(&d, 0, sizeof(d));
	d.magic = QUILL_SB_MAGIC;
	d.version = QUILL_FORMAT_VERSION;
	d.block_size = sb->block_size;
	memcpy(d.uuid, sb->uuid, sizeof(d.uuid));
	d.segment_size = sb->segment_size;
	d.segment_count = sb->segment_count;
	d.data_offset = sb->data_offset;
	d.device_size = sb->device_size;
	d.created_ns = sb->created_ns;
	d.crc = record_crc(&d, sizeof(d), offsetof(struct ondisk_superblock, crc));
	memcpy(buf, &d, sizeof(d));
}

int ondisk_superblock_decode(const void *buf, size_t len, struct superblock *sb)
{
	struct ondisk_superblock d;

	if (len < sizeof(d))
		return -EINVAL;
	memcpy(&d, buf, sizeof(d));
	if (d.magic != QUILL_SB_MAGIC)
		return -ENOENT;
	if (d.crc != record_crc(buf, sizeof(d), offsetof(struct ondisk_superblock, crc)))
		return -EILSEQ;
	if (d.version != QUILL_FORMAT_VERSION || d.block_size != QUILL_BLOCK_SIZE)
		return -EPROTO;
	if (d.segment_size < 16 * QUILL_BLOCK_SIZE || d.segment_size % QUILL_BLOCK_SIZE ||
	    d.segment_size / QUILL_BLOCK_SIZE > 65536 || d.segment_count == 0 ||
	    d.data_offset % QUILL_BLOCK_SIZE || d.data_offset < QUILL_BLOCK_SIZE ||
	    d.data_offset + (uint64_t)d.segment_count * d.segment_size > d.device_size)
		return -EPROTO;
	memcpy(sb->uuid, d.uuid, sizeof(sb->uuid));
	sb->block_size = d.block_size;
	sb->segment_size = d.segment_size;
	sb->segment_count = d.segment_count;
	sb->data_offset = d.data_offset;
	sb->device_size = d.device_size;
	sb->created_ns = d.created_ns;
	return 0;
}

uint32_t ondisk_superblock_version(const void *buf, size_t len)
{
	struct ondisk_superblock d;

	if (len < sizeof(d))
		return 0;
	memcpy(&d, buf, sizeof(d));
	return d.magic == QUILL_SB_MAGIC ? d.version : 0;
}

void ondisk_segment_header_encode(const struct segment_header *h, void *buf)
{
	struct ondisk_segment_header d;

	memset(&d, 0, sizeof(d));
	d.magic = QUILL_SEG_MAGIC;
	d.version = QUILL_FORMAT_VERSION;
	d.state = h->state;
	d.volume_id = h->volume_id;
	d.generation = h->generation;
	d.first_seq = h->first_seq;
	memcpy(d.uuid, h->uuid, sizeof(d.uuid));
	d.family_uid = h->family_uid;
	d.segment_no = h->sno;
	d.epoch = h->epoch;
	d.crc = record_crc(&d, sizeof(d), offsetof(struct ondisk_segment_header, crc));
	memcpy(buf, &d, sizeof(d));
}

int ondisk_segment_header_decode(const void *buf, size_t len, struct segment_header *h)
{
	struct ondisk_segment_header d;

	if (len < sizeof(d))
		return -EINVAL;
	memcpy(&d, buf, sizeof(d));
	if (d.magic != QUILL_SEG_MAGIC)
		return -ENOENT;
	if (d.crc != record_crc(buf, sizeof(d), offsetof(struct ondisk_segment_header, crc)))
		return -EILSEQ;
	/* no family: a segment without an id, which nothing could name */
	if (d.version != QUILL_FORMAT_VERSION ||
	    (d.state != ONDISK_SEG_USED && d.state != ONDISK_SEG_FREE) || d.family_uid == 0 ||
	    d.reserved0 != 0)
		return -EPROTO;
	h->state = d.state;
	h->volume_id = d.volume_id;
	h->generation = d.generation;
	h->first_seq = d.first_seq;
	memcpy(h->uuid, d.uuid, sizeof(h->uuid));
	h->family_uid = d.family_uid;
	h->sno = d.segment_no;
	h->epoch = d.epoch;
	return 0;
}

void ondisk_summary_encode(const struct summary *s, void *buf)
{
	struct ondisk_summary *d = buf;

	memset(d, 0, sizeof(*d));
	d->magic = QUILL_SUM_MAGIC;
	d->generation = s->generation;
	d->volume_id = s->volume_id;
	d->seq = s->seq;
	d->durable_seq = s->durable_seq;
	d->open_seq = s->open_seq;
	d->nentries = s->nentries;
	d->data_blocks = s->data_blocks;
	for (uint32_t i = 0; i < s->nentries; i++) {
		const struct summary_entry *e = &s->entries[i];
		struct ondisk_summary_entry *o = &d->entries[i];
		o->lba = e->lba;
		o->nblocks = e->nblocks;
		o->kind = (uint16_t)e->kind;
		o->src_block = (uint16_t)e->src_block;
		o->src_slot = e->src_slot;
		o->data_crc = e->data_crc;
	}
	d->crc = record_crc(d, sizeof(*d), offsetof(struct ondisk_summary, crc));
}

static int summary_entry_decode(const struct ondisk_summary_entry *o, struct summary_entry *e)
{
	e->lba = o->lba;
	e->nblocks = o->nblocks;
	e->kind = (enum ondisk_entry_kind)o->kind;
	e->src_slot = o->src_slot;
	e->src_block = o->src_block;
	e->data_crc = o->data_crc;
	switch (o->kind) {
	case ONDISK_ENTRY_DATA:
	case ONDISK_ENTRY_MOVE:
	case ONDISK_ENTRY_FILL:
	case ONDISK_ENTRY_TOMB:
		return o->nblocks == 1 ? 1 : -EPROTO;
	case ONDISK_ENTRY_MAPS:
		return o->nblocks == 1 ? 1 : -EPROTO;
	case ONDISK_ENTRY_FCKPT:
		return o->nblocks == 1 && (o->src_block == ONDISK_FCKPT_BEGIN ||
					   o->src_block == ONDISK_FCKPT_END) ? 1 : -EPROTO;
	case ONDISK_ENTRY_LAYER:
		return o->nblocks == 1 && (o->src_block == ONDISK_LAYER_SET ||
					   o->src_block == ONDISK_LAYER_MERGE) ? 1 : -EPROTO;
	case ONDISK_ENTRY_TRIM:
		return o->nblocks >= 1 ? 0 : -EPROTO;
	case ONDISK_ENTRY_ZERO:
		return o->nblocks >= 1 && o->src_block <= ONDISK_ZERO_FILL ? 0 : -EPROTO;
	default:
		return -EPROTO;
	}
}

int ondisk_summary_decode(const void *buf, size_t len, struct summary *s)
{
	const struct ondisk_summary *d = buf;
	uint32_t data_blocks = 0;

	if (len < sizeof(*d))
		return -EINVAL;
	if (d->magic != QUILL_SUM_MAGIC)
		return -ENOENT;
	if (d->crc != record_crc(buf, sizeof(*d), offsetof(struct ondisk_summary, crc)))
		return -EILSEQ;
	if (d->nentries == 0 || d->nentries > ONDISK_SUMMARY_MAX_ENTRIES)
		return -EPROTO;
	/* the marks describe batches written before this one, in its own engine run */
	if (d->open_seq == 0 || d->open_seq > d->seq || d->durable_seq >= d->seq)
		return -EPROTO;
	s->generation = d->generation;
	s->volume_id = d->volume_id;
	s->seq = d->seq;
	s->durable_seq = d->durable_seq;
	s->open_seq = d->open_seq;
	s->nentries = d->nentries;
	for (uint32_t i = 0; i < d->nentries; i++) {
		struct ondisk_summary_entry o;
		int r;

		memcpy(&o, &d->entries[i], sizeof(o));
		r = summary_entry_decode(&o, &s->entries[i]);
		if (r < 0)
			return r;
		data_blocks += (uint32_t)r;
	}
	if (data_blocks != d->data_blocks)
		return -EPROTO;
	s->data_blocks = data_blocks;
	return 0;
}

void ondisk_volume_record_encode(const struct volume_record *v, struct ondisk_volume_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = QUILL_FORMAT_VERSION;
	out->volume_id = v->volume_id;
	out->size = v->size;
	out->created_ns = v->created_ns;
	memcpy(out->name, v->name, sizeof(out->name));
	out->name[QUILL_VOLUME_NAME_MAX] = '\0';
	out->kind = v->kind;
	out->parent_id = v->parent_id;
	out->overlap = v->overlap;
	out->uid = v->uid;
	out->flags = v->flags;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_volume_record, crc));
}

int ondisk_volume_record_decode(const void *buf, size_t len, struct volume_record *v)
{
	struct ondisk_volume_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_volume_record, crc));

	if (err < 0)
		return err;
	if (d.version != QUILL_FORMAT_VERSION || d.size % QUILL_BLOCK_SIZE ||
	    memchr(d.name, '\0', sizeof(d.name)) == NULL || d.name[0] == '\0' ||
	    d.kind > ONDISK_LAYER_SNAPSHOT || d.parent_id == d.volume_id ||
	    (d.flags & ~(uint32_t)(ONDISK_LAYER_FLAGS_KNOWN | ONDISK_LAYER_DELETED)) ||
	    (d.parent_id == 0 && d.overlap != 0) || d.overlap > d.size / QUILL_BLOCK_SIZE ||
	    d.uid == 0)
		return -EPROTO;
	v->kind = (enum ondisk_layer_kind)d.kind;
	v->parent_id = d.parent_id;
	v->overlap = d.overlap;
	v->uid = d.uid;
	v->flags = d.flags;
	v->volume_id = d.volume_id;
	v->size = d.size;
	v->created_ns = d.created_ns;
	memcpy(v->name, d.name, sizeof(v->name));
	return 0;
}

void ondisk_layer_block_encode(const struct layer_block *l, void *buf)
{
	struct ondisk_layer_block *d = buf;
	struct ondisk_volume_record rec;

	memset(d, 0, sizeof(*d));
	d->magic = QUILL_LAYER_MAGIC;
	d->version = QUILL_FORMAT_VERSION;
	d->op = l->op;
	d->merge_seq = l->merge_seq;
	d->child_id = l->child_id;
	d->child_overlap = l->child_overlap;
	d->alias_to = l->alias_to;
	ondisk_volume_record_encode(&l->rec, &rec);
	memcpy(d->rec, &rec, sizeof(rec));
	d->crc = record_crc(d, sizeof(*d), offsetof(struct ondisk_layer_block, crc));
}

int ondisk_layer_block_decode(const void *buf, size_t len, struct layer_block *l)
{
	const struct ondisk_layer_block *d = buf;
	int r;

	if (len < sizeof(*d))
		return -EINVAL;
	if (d->magic != QUILL_LAYER_MAGIC)
		return -ENOENT;
	if (d->crc != record_crc(buf, sizeof(*d), offsetof(struct ondisk_layer_block, crc)))
		return -EILSEQ;
	if (d->version != QUILL_FORMAT_VERSION ||
	    (d->op != ONDISK_LAYER_SET && d->op != ONDISK_LAYER_MERGE))
		return -EPROTO;
	r = ondisk_volume_record_decode(d->rec, sizeof(d->rec), &l->rec);
	if (r < 0)
		return r == -EINVAL ? -EPROTO : r;
	l->op = (enum ondisk_layer_op)d->op;
	l->merge_seq = d->merge_seq;
	l->child_id = d->child_id;
	l->child_overlap = d->child_overlap;
	l->alias_to = d->alias_to;
	return 0;
}

void ondisk_tomb_block_encode(const struct tomb_block *t, void *buf)
{
	struct ondisk_tomb_block *d = buf;

	memset(d, 0, sizeof(*d));
	d->magic = QUILL_TOMB_MAGIC;
	d->version = QUILL_FORMAT_VERSION;
	d->count = t->count;
	d->layer_id = t->layer_id;
	memcpy(d->tombs, t->tombs, t->count * sizeof(t->tombs[0]));
	d->crc = record_crc(d, sizeof(*d), offsetof(struct ondisk_tomb_block, crc));
}

int ondisk_tomb_block_decode(const void *buf, size_t len, struct tomb_block *t)
{
	const struct ondisk_tomb_block *d = buf;

	if (len < sizeof(*d))
		return -EINVAL;
	if (d->magic != QUILL_TOMB_MAGIC)
		return -ENOENT;
	if (d->crc != record_crc(buf, sizeof(*d), offsetof(struct ondisk_tomb_block, crc)))
		return -EILSEQ;
	if (d->version != QUILL_FORMAT_VERSION || d->count == 0 || d->count > ONDISK_TOMB_MAX)
		return -EPROTO;
	t->layer_id = d->layer_id;
	t->count = d->count;
	memcpy(t->tombs, d->tombs, d->count * sizeof(t->tombs[0]));
	for (uint32_t i = 0; i < t->count; i++)
		if (ONDISK_TOMB_NBLOCKS(&t->tombs[i]) == 0 ||
		    (t->tombs[i].nblocks &
		     ~(ONDISK_TOMB_ALLOCATED | ONDISK_TOMB_FILL | 0xffffffffull)) ||
		    (t->tombs[i].nblocks & (ONDISK_TOMB_ALLOCATED | ONDISK_TOMB_FILL)) ==
			    ONDISK_TOMB_FILL)
			return -EPROTO;
	return 0;
}

void ondisk_store_record_encode(const uint8_t uuid[16], uint64_t next_volume_id,
				struct ondisk_store_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = QUILL_FORMAT_VERSION;
	memcpy(out->uuid, uuid, sizeof(out->uuid));
	out->next_volume_id = next_volume_id;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_store_record, crc));
}

int ondisk_store_record_decode(const void *buf, size_t len, uint8_t uuid[16],
			       uint64_t *next_volume_id)
{
	struct ondisk_store_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_store_record, crc));

	if (err < 0)
		return err;
	if (d.version != QUILL_FORMAT_VERSION)
		return -EPROTO;
	memcpy(uuid, d.uuid, sizeof(d.uuid));
	*next_volume_id = d.next_volume_id;
	return 0;
}

void ondisk_checkpoint_encode(uint64_t seq, struct ondisk_checkpoint *out)
{
	memset(out, 0, sizeof(*out));
	out->version = QUILL_FORMAT_VERSION;
	out->seq = seq;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_checkpoint, crc));
}

int ondisk_checkpoint_decode(const void *buf, size_t len, uint64_t *seq)
{
	struct ondisk_checkpoint d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_checkpoint, crc));

	if (err < 0)
		return err;
	if (d.version != QUILL_FORMAT_VERSION)
		return -EPROTO;
	*seq = d.seq;
	return 0;
}

/* ---- family checkpoint blocks (planned: docs/format.md, "Family checkpoint blocks") */

void ondisk_fmaps_block_encode(const struct fmaps_block *m, void *buf)
{
	struct ondisk_fmaps_hdr *h = buf;
	uint8_t *p = (uint8_t *)buf + sizeof(*h);

	memset(buf, 0, QUILL_BLOCK_SIZE);
	h->magic = QUILL_FMAPS_MAGIC;
	h->version = ONDISK_FMAPS_VERSION;
	h->nchunks = (uint16_t)m->nchunks;
	h->layer = m->layer;
	h->ckpt = m->ckpt;
	for (uint32_t i = 0; i < m->nchunks; i++) {
		const struct fmaps_chunk *c = &m->chunks[i];
		struct ondisk_fmaps_chunk ch = { .chunk = c->chunk,
						 .nentries = (uint16_t)c->nentries };

		memcpy(p, &ch, sizeof(ch));
		p += sizeof(ch);
		memcpy(p, c->e, c->nentries * sizeof(c->e[0]));
		p += c->nentries * sizeof(c->e[0]);
	}
	h->crc = record_crc(buf, QUILL_BLOCK_SIZE, offsetof(struct ondisk_fmaps_hdr, crc));
}

/* The entries of one chunk: in index order, a zero entry's block 0 or 1. */
static bool fmaps_entries_ok(const struct fmaps_chunk *c)
{
	for (uint32_t k = 0; k < c->nentries; k++) {
		const struct ondisk_map_entry *e = &c->e[k];

		if (e->index >= MAP_CHUNK_BLOCKS || (k > 0 && e->index <= c->e[k - 1].index))
			return false;
		if (e->slot == ONDISK_MAP_SLOT_ZERO && e->block > ONDISK_MAP_ZERO_ALLOCATED)
			return false;
	}
	return true;
}

/* A block of a family checkpoint: its length, magic and CRC. */
static int fblock_check(const void *buf, size_t len, uint32_t magic, size_t crc_off)
{
	uint32_t m, crc;

	if (len < QUILL_BLOCK_SIZE)
		return -EINVAL;
	memcpy(&m, buf, sizeof(m));
	if (m != magic)
		return -ENOENT;
	memcpy(&crc, (const uint8_t *)buf + crc_off, sizeof(crc));
	return crc == record_crc(buf, QUILL_BLOCK_SIZE, crc_off) ? 0 : -EILSEQ;
}

int ondisk_fmaps_block_decode(const void *buf, size_t len, struct fmaps_block *m)
{
	struct ondisk_fmaps_hdr h;
	const uint8_t *p = (const uint8_t *)buf + sizeof(h);
	const uint8_t *end = (const uint8_t *)buf + QUILL_BLOCK_SIZE;
	int r = fblock_check(buf, len, QUILL_FMAPS_MAGIC, offsetof(struct ondisk_fmaps_hdr, crc));

	if (r < 0)
		return r;
	memcpy(&h, buf, sizeof(h));
	if (h.version != ONDISK_FMAPS_VERSION || h.nchunks == 0 ||
	    h.nchunks > ONDISK_FMAPS_CHUNKS)
		return -EPROTO;
	m->layer = h.layer;
	m->ckpt = h.ckpt;
	m->nchunks = h.nchunks;
	for (uint32_t i = 0; i < m->nchunks; i++) {
		struct fmaps_chunk *c = &m->chunks[i];
		struct ondisk_fmaps_chunk ch;

		memcpy(&ch, p, sizeof(ch));
		p += sizeof(ch);
		if (ch.nentries > MAP_CHUNK_BLOCKS ||
		    (size_t)(end - p) < ch.nentries * sizeof(c->e[0]))
			return -EPROTO;
		c->chunk = ch.chunk;
		c->nentries = ch.nentries;
		memcpy(c->e, p, ch.nentries * sizeof(c->e[0]));
		p += ch.nentries * sizeof(c->e[0]);
		if (!fmaps_entries_ok(c))
			return -EPROTO;
	}
	return 0;
}

void ondisk_fckpt_block_encode(const struct fckpt_block *f, void *buf)
{
	struct ondisk_fckpt_hdr *h = buf;
	uint8_t *p = (uint8_t *)buf + sizeof(*h);

	memset(buf, 0, QUILL_BLOCK_SIZE);
	h->magic = QUILL_FCKPT_MAGIC;
	h->version = ONDISK_FCKPT_VERSION;
	h->type = (uint8_t)f->type;
	h->last = f->last;
	h->family = f->family;
	h->ckpt = f->ckpt;
	h->base = f->base;
	h->seq = f->seq;
	h->epoch = f->epoch;
	h->nruns = (uint16_t)f->nruns;
	h->nsegs = (uint16_t)f->nsegs;
	memcpy(p, f->runs, f->nruns * sizeof(f->runs[0]));
	memcpy(p + f->nruns * sizeof(f->runs[0]), f->segs, f->nsegs * sizeof(f->segs[0]));
	h->crc = record_crc(buf, QUILL_BLOCK_SIZE, offsetof(struct ondisk_fckpt_hdr, crc));
}

int ondisk_fckpt_block_decode(const void *buf, size_t len, struct fckpt_block *f)
{
	struct ondisk_fckpt_hdr h;
	const uint8_t *p = (const uint8_t *)buf + sizeof(h);
	int r = fblock_check(buf, len, QUILL_FCKPT_MAGIC, offsetof(struct ondisk_fckpt_hdr, crc));

	if (r < 0)
		return r;
	memcpy(&h, buf, sizeof(h));
	if (h.version != ONDISK_FCKPT_VERSION || h.family == 0 || h.ckpt == 0 || h.last > 1 ||
	    (h.type != ONDISK_FCKPT_BEGIN && h.type != ONDISK_FCKPT_END))
		return -EPROTO;
	if (h.type == ONDISK_FCKPT_BEGIN && (h.nruns || h.nsegs || h.last))
		return -EPROTO;
	if ((size_t)h.nruns * sizeof(f->runs[0]) + (size_t)h.nsegs * sizeof(f->segs[0]) >
	    ONDISK_FCKPT_AREA)
		return -EPROTO;
	*f = (struct fckpt_block){ .type = h.type, .last = h.last, .family = h.family,
				   .ckpt = h.ckpt, .base = h.base, .seq = h.seq,
				   .epoch = h.epoch, .nruns = h.nruns, .nsegs = h.nsegs };
	memcpy(f->runs, p, h.nruns * sizeof(f->runs[0]));
	memcpy(f->segs, p + h.nruns * sizeof(f->runs[0]), h.nsegs * sizeof(f->segs[0]));
	for (uint32_t i = 0; i < f->nruns; i++)
		if (f->runs[i].count == 0)
			return -EPROTO;
	return 0;
}

/* ---- fragment records ---- */

_Static_assert(ONDISK_FRAG_KEY_LEN == 13, "a fragment key is a segment key");

void ondisk_frag_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_FRAG_KEY_LEN])
{
	segment_key('G', family_uid, sno, key);
}

int ondisk_frag_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno)
{
	return segment_key_decode('G', key, len, family_uid, sno);
}

void ondisk_frag_record_encode(const struct frag_record *r, struct ondisk_frag_record *out)
{
	memset(out, 0, sizeof(*out));
	out->version = ONDISK_FRAG_RECORD_VERSION;
	out->slot = r->slot;
	out->epoch = r->epoch;
	out->index = r->index;
	out->k = r->k;
	out->m = r->m;
	out->seg_blocks = r->seg_blocks;
	out->frag_blocks = r->frag_blocks;
	out->image_blocks = r->image_blocks;
	out->frag_crc = r->frag_crc;
	out->head_crc = r->head_crc;
	out->crc = record_crc(out, sizeof(*out), offsetof(struct ondisk_frag_record, crc));
}

int ondisk_frag_record_decode(const void *buf, size_t len, struct frag_record *r)
{
	struct ondisk_frag_record d;
	int err = record_load(buf, len, &d, sizeof(d), offsetof(struct ondisk_frag_record, crc));

	if (err < 0)
		return err;
	if (d.version != ONDISK_FRAG_RECORD_VERSION)
		return -EPROTO;
	for (size_t i = 0; i < sizeof(d.reserved); i++)
		if (d.reserved[i])
			return -EPROTO;
	if (d.reserved0 || !d.k || !d.m || d.index >= d.k + d.m || !d.frag_blocks ||
	    d.image_blocks <= d.frag_blocks)
		return -EPROTO;
	*r = (struct frag_record){ .slot = d.slot, .epoch = d.epoch, .index = d.index,
				   .k = d.k, .m = d.m, .seg_blocks = d.seg_blocks,
				   .frag_blocks = d.frag_blocks, .image_blocks = d.image_blocks,
				   .frag_crc = d.frag_crc, .head_crc = d.head_crc };
	return 0;
}
