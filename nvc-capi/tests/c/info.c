/* `nvidia-container-cli info` through the C API, printed as upstream's CLI prints it. */
#include <stdio.h>
#include <sys/sysmacros.h>

#include "nvc.h"

int main(int argc, char **argv)
{
        struct nvc_context *ctx = nvc_context_new();
        struct nvc_config *cfg = nvc_config_new();
        struct nvc_driver_info *drv = NULL;
        struct nvc_device_info *dev = NULL;
        int rv = 1;

        if (ctx == NULL || cfg == NULL)
                return (1);
        cfg->root = argc > 1 ? argv[1] : NULL;
        if (nvc_init(ctx, cfg, NULL) < 0) {
                fprintf(stderr, "initialization error: %s\n", nvc_error(ctx));
                goto fail;
        }
        if ((drv = nvc_driver_info_new(ctx, NULL)) == NULL ||
            (dev = nvc_device_info_new(ctx, NULL)) == NULL) {
                fprintf(stderr, "detection error: %s\n", nvc_error(ctx));
                goto fail;
        }
        printf("%-15s %s\n", "NVRM version:", drv->nvrm_version);
        printf("%-15s %s\n", "CUDA version:", drv->cuda_version);
        for (size_t i = 0; i < dev->ngpus; ++i) {
                const struct nvc_device *g = &dev->gpus[i];
                printf("\n");
                printf("%-15s %zu\n", "Device Index:", i);
                printf("%-15s %u\n", "Device Minor:", minor(g->node.id));
                printf("%-15s %s\n", "Model:", g->model);
                printf("%-15s %s\n", "Brand:", g->brand);
                printf("%-15s %s\n", "GPU UUID:", g->uuid);
                printf("%-15s %s\n", "Bus Location:", g->busid);
                printf("%-15s %s\n", "Architecture:", g->arch);
        }
        rv = 0;
 fail:
        nvc_shutdown(ctx);
        nvc_device_info_free(dev);
        nvc_driver_info_free(drv);
        nvc_config_free(cfg);
        nvc_context_free(ctx);
        return (rv);
}
