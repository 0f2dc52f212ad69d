/* tools/control_proto.c — what both ends of the control protocol share. */
#include "tools/control_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

char *control_default_socket(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg && *xdg)
		n = snprintf(buf, len, "%s/quill/quilld.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/quill-%u/quilld.sock", (unsigned)getuid());
	return n > 0 && (size_t)n < len ? buf : NULL;
}
