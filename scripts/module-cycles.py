#!/usr/bin/env python3
"""Fails if the modules of any crate import each other in a circle
(`crate::a` in b and `crate::b` in a, or longer): each crate's modules
must form layers. Test modules are not counted."""
import re,os,sys
def crate(src):
    mods={}
    for root,_,files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p=os.path.join(root,f); rel=os.path.relpath(p,src)[:-3]
            if rel in ('lib','main') or rel.startswith('bin/'): continue
            name=rel.replace('/mod','').split('/')[0]
            mods.setdefault(name,[]).append(p)
    # root re-exports
    libs=[os.path.join(src,x) for x in ('lib.rs','main.rs') if os.path.exists(os.path.join(src,x))]
    reexp={}
    for l in libs:
        for m,items in re.findall(r'pub use ([a-z_]+)::\{?([A-Za-z_, ]+)\}?;',open(l).read()):
            for it in items.split(','): reexp[it.strip()]=m
    g={}
    for m,files in mods.items():
        s=''
        for p in files:
            t=open(p).read(); i=t.find('#[cfg(test)]')
            s+= t[:i] if i>=0 else t
        deps=set(re.findall(r'crate::([a-z_]+)',s)) | set(re.findall(r'super::([a-z_]+)',s))
        for grp in re.findall(r'crate::\{([^}]*)\}',s): deps|=set(re.findall(r'\b([a-z_]+)\b',grp))
        for k,v in reexp.items():
            if re.search(r'crate::'+k+r'\b',s) or re.search(r'crate::\{[^}]*\b'+k+r'\b',s): deps.add(v)
        g[m]={d for d in deps if d in mods and d!=m}
    idx={};low={};st=[];on=set();out=[];c=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in g[v]:
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: out.append(comp)
    for v in g:
        if v not in idx: sc(v)
    return out,g
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
bad = False
for d in sorted(os.listdir('crates')):
    src=os.path.join('crates',d,'src')
    if not os.path.isdir(src): continue
    out,g=crate(src)
    for comp in out:
        bad = True
        print(f'module circle in crates/{d}:')
        for m in comp: print('   ',m,'->',sorted(g[m]&set(comp)))
if bad:
    sys.exit(1)
print('module graph: no circles in any crate')
