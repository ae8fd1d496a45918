/* Misuse gets upstream's errors, never a crash:  misuse ROOT ROOTFS */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nvc.h"

static int failures;

#define EXPECT(cond) do { if (!(cond)) { \
        fprintf(stderr, "line %d: %s\n", __LINE__, #cond); ++failures; } } while (0)
#define ERROR_IS(ctx, text) EXPECT(nvc_error(ctx) != NULL && strcmp(nvc_error(ctx), text) == 0)

int main(int argc, char **argv)
{
        char big[2 * NVC_ARG_MAX];

        if (argc < 3)
                return (2);
        /* No context at all. */
        EXPECT(nvc_init(NULL, NULL, NULL) == -1);
        EXPECT(nvc_error(NULL) == NULL);
        EXPECT(nvc_shutdown(NULL) == 0);
        EXPECT(nvc_driver_info_new(NULL, NULL) == NULL);

        /* Before nvc_init. */
        struct nvc_context *ctx = nvc_context_new();
        EXPECT(ctx != NULL);
        EXPECT(nvc_driver_info_new(ctx, NULL) == NULL);
        ERROR_IS(ctx, "context uninitialized");
        EXPECT(nvc_device_info_new(ctx, NULL) == NULL);
        ERROR_IS(ctx, "context uninitialized");
        EXPECT(nvc_ldcache_update(ctx, NULL) == -1);
        ERROR_IS(ctx, "context uninitialized");

        /* Configurations: defaults, double free. */
        struct nvc_config *cfg = nvc_config_new();
        EXPECT(cfg != NULL && cfg->uid == (uid_t)-1 && cfg->gid == (gid_t)-1);
        nvc_config_free(cfg);
        nvc_config_free(cfg);

        /* Bad options and configurations. */
        cfg = nvc_config_new();
        cfg->root = argv[1];
        EXPECT(nvc_init(ctx, cfg, "load-kmods bogus") == -1);
        ERROR_IS(ctx, "invalid option: bogus");
        memset(big, 0, sizeof(big));
        for (size_t i = 0; i + 11 < sizeof(big); i += 11)
                memcpy(big + i, "load-kmods ", 11);
        EXPECT(nvc_init(ctx, cfg, big) == -1);
        ERROR_IS(ctx, "too many options");
        cfg->ldcache = "";
        EXPECT(nvc_init(ctx, cfg, NULL) == -1);
        ERROR_IS(ctx, "invalid argument");
        cfg->ldcache = NULL;

        /* Initialised, twice. */
        EXPECT(nvc_init(ctx, cfg, NULL) == 0);
        EXPECT(nvc_init(ctx, cfg, NULL) == 0);
        EXPECT(nvc_driver_info_new(ctx, "no-bogus") == NULL);
        ERROR_IS(ctx, "invalid option: no-bogus");
        EXPECT(nvc_device_info_new(ctx, "anything") == NULL);
        ERROR_IS(ctx, "invalid option: anything");

        /* Containers. */
        EXPECT(nvc_container_new(ctx, NULL, NULL) == NULL);
        ERROR_IS(ctx, "invalid argument");
        struct nvc_container_config *ccfg = nvc_container_config_new(0, argv[2]);
        EXPECT(nvc_container_new(ctx, ccfg, "supervised") == NULL);
        ERROR_IS(ctx, "invalid argument");
        ccfg->pid = getpid();
        ccfg->rootfs = "relative/rootfs";
        EXPECT(nvc_container_new(ctx, ccfg, "supervised") == NULL);
        ERROR_IS(ctx, "invalid argument");
        ccfg->rootfs = argv[2];
        ccfg->libs_dir = "";
        EXPECT(nvc_container_new(ctx, ccfg, "supervised") == NULL);
        ERROR_IS(ctx, "invalid argument");
        ccfg->libs_dir = NULL;
        EXPECT(nvc_container_new(ctx, ccfg, "supervised standalone") == NULL);
        ERROR_IS(ctx, "invalid mode of operation");
        EXPECT(nvc_container_new(ctx, ccfg, "compute") == NULL);
        ERROR_IS(ctx, "invalid mode of operation");
        EXPECT(nvc_container_new(ctx, ccfg,
            "supervised cuda-compat-mode=mount cuda-compat-mode=ldconfig") == NULL);
        ERROR_IS(ctx, "only one cuda-compat-mode can be specified at a time");
        struct nvc_container *cnt = nvc_container_new(ctx, ccfg, "supervised utility");
        EXPECT(cnt != NULL);

        /* Objects that are not the library's, or no longer. */
        struct nvc_driver_info *drv = nvc_driver_info_new(ctx, NULL);
        struct nvc_device_info *dev = nvc_device_info_new(ctx, NULL);
        EXPECT(drv != NULL && dev != NULL);
        struct nvc_device fake;
        memset(&fake, 0, sizeof(fake));
        EXPECT(nvc_device_mount(ctx, cnt, &fake) == -1);
        ERROR_IS(ctx, "invalid argument");
        EXPECT(nvc_device_mount(ctx, NULL, dev->ngpus ? &dev->gpus[0] : &fake) == -1);
        ERROR_IS(ctx, "invalid argument");
        EXPECT(nvc_imex_channel_mount(ctx, cnt, NULL) == -1);
        ERROR_IS(ctx, "invalid argument");
        EXPECT(nvc_nvcaps_device_from_proc_path(ctx, NULL, NULL) == -1);
        ERROR_IS(ctx, "invalid argument");
        nvc_driver_info_free(drv);
        nvc_driver_info_free(drv);
        EXPECT(nvc_driver_mount(ctx, cnt, drv) == -1);
        ERROR_IS(ctx, "invalid argument");
        nvc_device_info_free(dev);
        nvc_device_info_free(dev);
        nvc_container_free(cnt);
        nvc_container_free(cnt);
        EXPECT(nvc_ldcache_update(ctx, cnt) == -1);
        ERROR_IS(ctx, "invalid argument");

        /* The version, and the end. */
        EXPECT(nvc_version()->major == NVC_MAJOR && strcmp(nvc_version()->string, NVC_VERSION) == 0);
        nvc_container_config_free(ccfg);
        nvc_container_config_free(ccfg);
        EXPECT(nvc_shutdown(ctx) == 0);
        EXPECT(nvc_shutdown(ctx) == 0);
        EXPECT(nvc_driver_info_new(ctx, NULL) == NULL);
        ERROR_IS(ctx, "context uninitialized");
        nvc_config_free(cfg);
        nvc_context_free(ctx);
        nvc_context_free(ctx);
        EXPECT(nvc_error(ctx) == NULL);
        if (failures == 0)
                printf("ok\n");
        return (failures != 0);
}
