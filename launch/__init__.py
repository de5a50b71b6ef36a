"""Starting the service's processes: one at a time (`amst serve api|worker|ui`) or all of them, supervised, on
this machine (`amst up`). The only package that knows every other: amst_core is the library, api, worker and ui
are the services, and this starts them."""
