/* version.h - the version string printed by -v and the admin API. */
#ifndef FULCRUM_VERSION_H
#define FULCRUM_VERSION_H

#include <openssl/opensslv.h>

#define FULCRUM_VERSION "0.1.0"

#endif
