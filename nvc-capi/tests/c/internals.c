/* What upstream's CLI does inside the "opaque" structs, through nvc_internal.h:
 *   internals ROOT ROOTFS
 * sets no_pivot, prints the container's flags and compat libraries, then replaces the
 * library list with a malloc()ed copy of its own and sets cuda_compat_dir, as the CLI's
 * compat-mode filter does, before nvc_container_free frees them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvc_internal.h"

int main(int argc, char **argv)
{
        struct nvc_context *ctx = nvc_context_new();
        struct nvc_config *cfg = nvc_config_new();
        struct nvc_container_config *ccfg = NULL;
        struct nvc_container *cnt = NULL;
        int rv = 1;

        if (argc < 3 || ctx == NULL || cfg == NULL)
                return (2);
        ctx->no_pivot = true;
        cfg->root = argv[1];
        if (nvc_init(ctx, cfg, NULL) < 0) {
                fprintf(stderr, "initialization error: %s\n", nvc_error(ctx));
                goto fail;
        }
        ccfg = nvc_container_config_new(getpid(), argv[2]);
        if ((cnt = nvc_container_new(ctx, ccfg, "supervised compute utility")) == NULL) {
                fprintf(stderr, "container error: %s\n", nvc_error(ctx));
                goto fail;
        }
        printf("no_pivot %d\n", ctx->no_pivot);
        printf("flags %d\n", cnt->flags);
        printf("rootfs %s\n", cnt->cfg.rootfs);
        for (size_t i = 0; i < cnt->nlibs; ++i)
                printf("lib %s\n", cnt->libs[i]);
        /* The CLI's filter: a shallow copy, the old array freed, entries dropped. */
        char **copy = calloc(cnt->nlibs + 1, sizeof(*copy));
        if (copy == NULL)
                goto fail;
        memcpy(copy, cnt->libs, cnt->nlibs * sizeof(*copy));
        free(cnt->libs);
        cnt->libs = copy;
        cnt->cuda_compat_dir = strdup("/usr/local/cuda/compat");
        rv = 0;
 fail:
        nvc_shutdown(ctx);
        nvc_container_free(cnt);
        nvc_container_config_free(ccfg);
        nvc_config_free(cfg);
        nvc_context_free(ctx);
        return (rv);
}
