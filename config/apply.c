/*
 * apply.c - applies one "key = value" line to the current section: finds
 * the key in its section's table, refuses a repeated single key, parses
 * the value by its type and stores it.
 *
 * Runs on the main thread inside cfg_load().
 */
#include "config/config.h"
#include "config/loader.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct cfg_key_def *table_of(enum cfg_sec sec)
{
	switch (sec) {
	case CFG_SEC_GLOBAL:
		return cfg_global_keys;
	case CFG_SEC_POOL:
		return cfg_pool_keys;
	case CFG_SEC_LISTENER:
		return cfg_listener_keys;
	case CFG_SEC_ROUTE:
		return cfg_route_keys;
	default:
		return NULL;
	}
}

static struct cfg_key_lines *lines_of(const struct cfg_loader *ld, enum cfg_sec sec, size_t idx)
{
	switch (sec) {
	case CFG_SEC_GLOBAL:
		return (struct cfg_key_lines *)&ld->global_keys;
	case CFG_SEC_POOL:
		return &ld->pool_keys[idx];
	case CFG_SEC_LISTENER:
		return &ld->listener_keys[idx];
	case CFG_SEC_ROUTE:
		return &ld->route_keys[idx];
	default:
		return NULL;
	}
}

/* The struct the current section's keys write into. */
static void *object_of(struct cfg_loader *ld)
{
	switch (ld->sec) {
	case CFG_SEC_GLOBAL:
		return &ld->cfg->global;
	case CFG_SEC_POOL:
		return &ld->cfg->pools[ld->idx];
	case CFG_SEC_LISTENER:
		return &ld->cfg->listeners[ld->idx];
	default:
		return &ld->cfg->routes[ld->idx];
	}
}

static int find_key(const struct cfg_key_def *t, const char *name)
{
	for (int i = 0; t[i].name; i++) {
		if (strcmp(t[i].name, name) == 0)
			return i;
	}
	return -1;
}

int cfg_key_line(const struct cfg_loader *ld, enum cfg_sec sec, size_t idx, const char *name)
{
	const struct cfg_key_def *t = table_of(sec);
	int i = t ? find_key(t, name) : -1;

	BUG_ON(i < 0);
	return i < 0 ? 0 : lines_of(ld, sec, idx)->line[i];
}

/* "[pool web]" for messages. */
static void section_title(struct cfg_loader *ld, char *buf, size_t len)
{
	switch (ld->sec) {
	case CFG_SEC_GLOBAL:
		snprintf(buf, len, "[global]");
		break;
	case CFG_SEC_POOL:
		snprintf(buf, len, "[pool %s]", ld->cfg->pools[ld->idx].name);
		break;
	case CFG_SEC_LISTENER:
		snprintf(buf, len, "[listener %s]", ld->cfg->listeners[ld->idx].name);
		break;
	default:
		snprintf(buf, len, "[route %s]", ld->cfg->routes[ld->idx].name);
		break;
	}
}

static int set_enum(struct cfg_loader *ld, const struct cfg_key_def *k, void *field,
		    const char *value)
{
	char expected[256] = "";
	size_t n = 0;

	for (int i = 0; k->names[i]; i++) {
		if (strcmp(k->names[i], value) == 0) {
			*(int *)field = i;
			return 0;
		}
	}
	for (int i = 0; k->names[i]; i++) {
		const char *sep = !k->names[i + 1] ? " or " : ", ";
		n += (size_t)snprintf(expected + n, sizeof(expected) - n, "%s%s", i == 0 ? "" : sep,
				      k->names[i]);
		if (n >= sizeof(expected))
			break;
	}
	cfg_ld_err(ld, "unknown %s \"%s\" (expected %s)", k->name, value, expected);
	return -EINVAL;
}

static int set_duration(struct cfg_loader *ld, const struct cfg_key_def *k, void *field,
			const char *value)
{
	uint64_t ms;

	if (cfg_parse_duration_ms(value, &ms) < 0) {
		cfg_ld_err(ld, "bad duration \"%s\" for %s", value, k->name);
		return -EINVAL;
	}
	if (ms == 0 && k->lo > 0) {
		cfg_ld_err(ld, "%s must be more than 0", k->name);
		return -EINVAL;
	}
	/* Deadlines are now + duration in milliseconds: a bound keeps that sum
	 * far from wrapping, and no timeout needs more. */
	if (ms > CFG_DURATION_MAX_MS) {
		cfg_ld_err(ld, "%s \"%s\" is over 365 days", k->name, value);
		return -EINVAL;
	}
	*(uint64_t *)field = ms;
	return 0;
}

static int set_size(struct cfg_loader *ld, const struct cfg_key_def *k, void *field,
		    const char *value)
{
	uint64_t bytes;

	if (cfg_parse_size(value, &bytes) < 0) {
		cfg_ld_err(ld, "bad size \"%s\" for %s", value, k->name);
		return -EINVAL;
	}
	if (bytes < (uint64_t)k->lo) {
		cfg_ld_err(ld, "%s must be at least %lld bytes", k->name, k->lo);
		return -EINVAL;
	}
	if (k->hi && bytes > (uint64_t)k->hi) {
		cfg_ld_err(ld, "%s must be at most %lld bytes", k->name, k->hi);
		return -EINVAL;
	}
	*(uint64_t *)field = bytes;
	return 0;
}

static int set_number(struct cfg_loader *ld, const struct cfg_key_def *k, void *field,
		      const char *value)
{
	long long n;

	if (cfg_parse_int(value, k->lo, k->hi, &n) < 0) {
		cfg_ld_err(ld, "bad number \"%s\" for %s (expected %lld to %lld)", value, k->name,
			   k->lo, k->hi);
		return -EINVAL;
	}
	if (k->type == CFG_KT_INT)
		*(int *)field = (int)n;
	else
		*(uint64_t *)field = (uint64_t)n;
	return 0;
}

static int set_value(struct cfg_loader *ld, const struct cfg_key_def *k, void *obj,
		     const char *value)
{
	void *field = (char *)obj + k->off;

	switch (k->type) {
	case CFG_KT_DURATION:
		return set_duration(ld, k, field, value);
	case CFG_KT_SIZE:
		return set_size(ld, k, field, value);
	case CFG_KT_BOOL:
		if (cfg_parse_bool(value, field) == 0)
			return 0;
		cfg_ld_err(ld,
			   "bad boolean \"%s\" for %s (expected on/off, yes/no, true/false or 1/0)",
			   value, k->name);
		return -EINVAL;
	case CFG_KT_INT:
	case CFG_KT_U64:
		return set_number(ld, k, field, value);
	case CFG_KT_STR:
		return cfg_set_str(ld, field, value);
	case CFG_KT_ENUM:
		return set_enum(ld, k, field, value);
	default:
		return k->fn(ld, obj, value);
	}
}

void cfg_keys_apply(struct cfg_loader *ld, const char *name, const char *value)
{
	const struct cfg_key_def *t = table_of(ld->sec);
	struct cfg_key_lines *lines = lines_of(ld, ld->sec, ld->idx);
	char title[300];
	int i = find_key(t, name);

	if (i < 0) {
		section_title(ld, title, sizeof(title));
		cfg_ld_err(ld, "unknown key \"%s\" in %s", name, title);
		return;
	}
	if (!t[i].repeat && lines->line[i] > 0) {
		cfg_ld_err(ld, "duplicate key \"%s\" (already set at line %d)", name,
			   lines->line[i]);
		return;
	}
	/* A bad first value is not also reported as a duplicate of the line that
	 * fixes it; a repeatable key counts as present even when a line of it
	 * was bad, so "no bind" or "no server" does not pile on. */
	if (set_value(ld, &t[i], object_of(ld), value) == 0 || t[i].repeat)
		lines->line[i] = ld->line;
}
