/*
 * The console's page: three files of dispatcher/page/, compiled into the
 * dispatcher (.incbin), so that what it serves is what was built and
 * nothing is read from disk or fetched from elsewhere at run time.  They
 * hold no data: the page asks the API for everything with the token its
 * login form keeps for the tab, so they are served without the token (but
 * behind the console's Host, Origin and Sec-Fetch-Site checks).  The
 * content security policy lets the page run only its own script and
 * style, talk only to its own origin, and be framed by no one.
 */

#include <string.h>

#include "console.h"

#ifndef CONSOLE_PAGE_DIR
#define CONSOLE_PAGE_DIR	"dispatcher/page"
#endif

/* name[] .. name_end[]: the bytes of file, then a NUL. */
#define CONSOLE_ASSET(name, file)					\
	__asm__(".section .rodata\n"					\
	    ".balign 16\n"						\
	    #name ":\n"							\
	    ".incbin \"" CONSOLE_PAGE_DIR "/" file "\"\n"		\
	    #name "_end:\n"						\
	    ".byte 0\n"							\
	    ".previous\n");						\
	extern const char name[] __attribute__((visibility("hidden")));	\
	extern const char name##_end[] __attribute__((visibility("hidden")))

CONSOLE_ASSET(console_asset_html, "index.html");
CONSOLE_ASSET(console_asset_js, "console.js");
CONSOLE_ASSET(console_asset_css, "console.css");

#define CONSOLE_CSP	"default-src 'none'; script-src 'self'; "	\
			"style-src 'self'; connect-src 'self'; "	\
			"img-src 'self' data:; base-uri 'none'; "	\
			"form-action 'none'; frame-ancestors 'none'"

static const struct {
	const char	*url;
	const char	*type;
	const char	*start;
	const char	*end;
} console_assets[] = {
	{ "/", "text/html; charset=utf-8", console_asset_html,
	    console_asset_html_end },
	{ "/console.js", "text/javascript; charset=utf-8", console_asset_js,
	    console_asset_js_end },
	{ "/console.css", "text/css; charset=utf-8", console_asset_css,
	    console_asset_css_end },
};

enum MHD_Result
console_page(struct MHD_Connection *c, const char *url, int *found)
{
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;
	size_t			 i;

	*found = 0;
	for (i = 0; i < sizeof(console_assets) / sizeof(console_assets[0]);
	    i++)
		if (strcmp(url, console_assets[i].url) == 0)
			break;
	if (i == sizeof(console_assets) / sizeof(console_assets[0]))
		return MHD_NO;
	*found = 1;
	resp = MHD_create_response_from_buffer(
	    (size_t)(console_assets[i].end - console_assets[i].start),
	    (void *)console_assets[i].start, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", console_assets[i].type);
	MHD_add_response_header(resp, "Content-Security-Policy", CONSOLE_CSP);
	console_headers(resp);
	rc = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}
