/* The flow of upstream's `nvidia-container-cli configure`, through the C API:
 *   flow ROOT PID OPTS ROOTFS [IMEX_CHANNEL]
 * init, container, driver and device information, driver mount, every GPU, every MIG
 * device's access (or, with FLOW_MIG_CAPS set, MIG configuration and monitoring of every
 * MIG-capable GPU), the IMEX channel, the linker cache, shutdown. FLOW_INIT_OPTS: the
 * library options ("load-kmods" makes the IMEX channel's node). FLOW_DROP_COMPAT: empty the
 * container's CUDA compat library list first, as upstream's CLI filter may. */
#include <stdio.h>
#include <stdlib.h>

#include "nvc_internal.h"

#define TRY(step, call) do { if ((call) < 0) { \
        fprintf(stderr, "%s error: %s\n", step, nvc_error(ctx)); goto fail; } } while (0)

int main(int argc, char **argv)
{
        struct nvc_context *ctx = nvc_context_new();
        struct nvc_config *cfg = nvc_config_new();
        struct nvc_container_config *ccfg = NULL;
        struct nvc_container *cnt = NULL;
        struct nvc_driver_info *drv = NULL;
        struct nvc_device_info *dev = NULL;
        int rv = 1;

        if (argc < 5 || ctx == NULL || cfg == NULL)
                return (2);
        struct nvc_imex_channel chan = {argc > 5 ? atoi(argv[5]) : 0};
        cfg->root = argv[1];
        if (argc > 5) {
                cfg->imex.chans = &chan;
                cfg->imex.nchans = 1;
        }
        TRY("initialization", nvc_init(ctx, cfg, getenv("FLOW_INIT_OPTS")));
        if ((ccfg = nvc_container_config_new(atoi(argv[2]), argv[4])) == NULL)
                goto fail;
        if ((cnt = nvc_container_new(ctx, ccfg, argv[3])) == NULL) {
                fprintf(stderr, "container error: %s\n", nvc_error(ctx));
                goto fail;
        }
        if ((drv = nvc_driver_info_new(ctx, NULL)) == NULL ||
            (dev = nvc_device_info_new(ctx, NULL)) == NULL) {
                fprintf(stderr, "detection error: %s\n", nvc_error(ctx));
                goto fail;
        }
        if (getenv("FLOW_DROP_COMPAT") != NULL) {
                for (size_t i = 0; i < cnt->nlibs; ++i)
                        free(cnt->libs[i]);
                free(cnt->libs);
                cnt->libs = NULL;
                cnt->nlibs = 0;
        }
        TRY("mount", nvc_driver_mount(ctx, cnt, drv));
        for (size_t i = 0; i < dev->ngpus; ++i)
                TRY("mount", nvc_device_mount(ctx, cnt, &dev->gpus[i]));
        if (getenv("FLOW_MIG_CAPS") != NULL) {
                TRY("mount", nvc_mig_config_global_caps_mount(ctx, cnt));
                for (size_t i = 0; i < dev->ngpus; ++i)
                        if (dev->gpus[i].mig_capable)
                                TRY("mount", nvc_device_mig_caps_mount(ctx, cnt, &dev->gpus[i]));
                TRY("mount", nvc_mig_monitor_global_caps_mount(ctx, cnt));
                for (size_t i = 0; i < dev->ngpus; ++i)
                        if (dev->gpus[i].mig_capable)
                                TRY("mount", nvc_device_mig_caps_mount(ctx, cnt, &dev->gpus[i]));
        } else {
                for (size_t i = 0; i < dev->ngpus; ++i) {
                        const struct nvc_mig_device_info *migs = &dev->gpus[i].mig_devices;
                        for (size_t j = 0; j < migs->ndevices; ++j)
                                TRY("mount", nvc_mig_device_access_caps_mount(ctx, cnt, &migs->devices[j]));
                }
        }
        if (argc > 5)
                TRY("mount", nvc_imex_channel_mount(ctx, cnt, &chan));
        TRY("ldcache", nvc_ldcache_update(ctx, cnt));
        rv = 0;
 fail:
        nvc_shutdown(ctx);
        nvc_container_free(cnt);
        nvc_device_info_free(dev);
        nvc_driver_info_free(drv);
        nvc_container_config_free(ccfg);
        nvc_config_free(cfg);
        nvc_context_free(ctx);
        return (rv);
}
