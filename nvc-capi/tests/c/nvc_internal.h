/* The two "opaque" structs as upstream's internal header (libnvidia-container 1.17)
 * declares them, up to the last field its CLI touches: it sets nvc_context.no_pivot, reads
 * nvc_container.flags and replaces .libs/.nlibs and .cuda_compat_dir. */
#include <stdint.h>

#include "nvc.h"

struct error {
        char *msg;
        int code;
};

struct nvc_context {
        bool initialized;
        struct error err;
        struct nvc_config cfg;
        int mnt_ns;
        bool no_pivot;
};

struct nvc_container {
        int32_t flags;
        struct nvc_container_config cfg;
        uid_t uid;
        gid_t gid;
        char *mnt_ns;
        int dev_cg_version;
        char *dev_cg;
        char **libs;
        size_t nlibs;
        char *cuda_compat_dir;
};
