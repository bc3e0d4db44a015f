/*
 * xen-shutdown DOMID reboot|poweroff|crash — shut a domain down from dom0 the way Xen itself does:
 * an HVM/PVH vCPU that triple-faults ends in domain_shutdown(SHUTDOWN_reboot) ("invoking HVM shutdown
 * action 1"), and the toolstack then restarts the domain under a new domid. The nested-Xen scenario
 * vicover-pvh-reboot uses it to make the recovery domain do that on purpose (CI saw it happen under
 * load) and checks that the session follows the new domid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenctrl.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: xen-shutdown DOMID reboot|poweroff|crash\n");
        return 2;
    }
    char *end;
    long domid = strtol(argv[1], &end, 10);
    if (*end || domid <= 0 || domid >= 0x7ff0) {
        fprintf(stderr, "xen-shutdown: bad domid %s\n", argv[1]);
        return 2;
    }
    int reason;
    if (!strcmp(argv[2], "reboot")) reason = SHUTDOWN_reboot;
    else if (!strcmp(argv[2], "poweroff")) reason = SHUTDOWN_poweroff;
    else if (!strcmp(argv[2], "crash")) reason = SHUTDOWN_crash;
    else {
        fprintf(stderr, "xen-shutdown: unknown reason %s\n", argv[2]);
        return 2;
    }
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xen-shutdown: xc_interface_open");
        return 1;
    }
    int rc = xc_domain_shutdown(xch, (uint32_t)domid, reason);
    if (rc) perror("xen-shutdown: xc_domain_shutdown");
    xc_interface_close(xch);
    return rc ? 1 : 0;
}
