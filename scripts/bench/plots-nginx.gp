# Plots of a `scripts/bench.sh --behind-nginx` run: gnuplot -e "dir='OUT_DIR'" scripts/bench/plots-nginx.gp
# Reads OUT_DIR/plot-nginx-*.dat (scripts/bench/report-nginx.js); writes OUT_DIR/bench-nginx-throughput.png
# (events/s and p99 per contender and load; bars: medians over rounds, error bars: min to max) and
# OUT_DIR/bench-nginx-deploy.png (what the clients saw during `pm2 reload` and a worker SIGKILL).
load dir.'/plot-nginx-meta.gp'
nloads = words(loads)
set terminal pngcairo size 470 * nloads, 980 font ",10" noenhanced
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics lc rgb "#dddddd"
set xtics nomirror scale 0 rotate by -30
set ytics nomirror
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
colors = "#1b9e77 #a6d854 #66c2a5 #d95f02 #fc8d62 #7570b3 #888888"
do for [k = 1:7] { set linetype k lc rgb word(colors, k) }

set output dir.'/bench-nginx-throughput.png'
set multiplot layout 2, nloads title sprintf("behind nginx with TLS, %d workers, median of %d round(s), bars: min-max; load average at start %s\n%s", \
    workers, rounds, load_at_start, machine)
do for [row = 0:1] {
  file = dir.'/plot-nginx-'.(row == 0 ? 'rps' : 'p99').'.dat'
  do for [i = 1:nloads] {
    c = 2 + 3 * (i - 1)
    set title word(loads, i).(row == 0 ? ': Socket.IO events/s (higher is better)' : ': delivery p99, ms (lower is better)')
    set ylabel (row == 0 ? 'events/s' : 'p99 ms')
    plot file using 0:c:($0 + 1):xtic(1) with boxes lc variable notitle, \
         '' using 0:c:c+1:c+2 with yerrorbars lc rgb "black" pt 0 notitle, \
         '' using 0:(column(c + 2)):(sprintf("%d", column(c))) with labels offset 0, 0.8 notitle
  }
}
unset multiplot

set output dir.'/bench-nginx-deploy.png'
set terminal pngcairo size 1100, 900 font ",10" noenhanced
set multiplot layout 2, 2 title sprintf("deploy under load behind nginx: pm2 reload, and one worker SIGKILLed (%d workers)\n%s", workers, machine)
do for [action in "reload sigkill"] {
  file = dir.'/plot-nginx-deploy-'.action.'.dat'
  set title (action eq 'reload' ? 'pm2 reload' : 'SIGKILL of one worker').': failed requests (4xx, 5xx, resets)'
  set ylabel 'failed requests'
  plot file using 0:2:($0 + 1):xtic(1) with boxes lc variable notitle, \
       '' using 0:2:(sprintf("%d", column(2))) with labels offset 0, 0.8 notitle
  set title (action eq 'reload' ? 'pm2 reload' : 'SIGKILL of one worker').': longest time a client got no ack, ms'
  set ylabel 'ms'
  plot file using 0:3:($0 + 1):xtic(1) with boxes lc variable notitle, \
       '' using 0:3:(sprintf("%d", column(3))) with labels offset 0, 0.8 notitle
}
unset multiplot
